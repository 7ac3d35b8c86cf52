"""The authorization matrix: every API operation, by every kind of caller, with exact answers.

The callers: nobody, a malformed token, an expired token, the owner of the timesheet in the
path (alice), another person (bob), staff with the permissions the API checks (sam), staff
without any permission (stan), and a person with the permissions who is not staff (pat): powers
come from the permissions, not from ``is_staff``. Each cell gives the exact status code.
Every timesheet's description carries a secret of its owner's, so that a response can be
searched for anyone else's data; a refused request must also change nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db.models import Model
from django.test import AsyncClient
from django.utils import timezone

from timesheets.models import Correction, Project, Segment, Timesheet
from timesheets.permissions import API_PERMISSIONS
from timesheets.services import segment_add, timesheet_create, timesheet_start
from webhooks.models import Subscription
from webhooks.services import subscription_create
from worker import process
from worker.registry import Job
from worker.runner import Runner

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settings_limits")]

CALLERS = ["nobody", "malformed", "expired", "owner", "other", "staff", "bare_staff", "permitted"]
REFUSED = {"nobody": 401, "malformed": 401, "expired": 401}


@dataclass(frozen=True)
class Operation:
    method: str
    # {mine}: alice's running timesheet, {run}: a finished run of hers, {hook}: her webhook
    path: str
    body: dict[str, Any] | None  # string values are formatted with the world's instants
    owner: int
    other: int
    staff: int
    # Staff without permissions is refused like anyone else; the permissions alone suffice.
    bare_staff: int | None = None  # None: as "other"
    permitted: int | None = None  # None: as "staff"
    # Whose data a successful answer may show, besides the caller's own.
    staff_sees: tuple[str, ...] = ()
    # An event stream never ends: an answer of 200 is checked by its headers, not its body.
    stream: bool = False

    def expected(self, caller: str) -> int:
        if caller == "bare_staff":
            return self.other if self.bare_staff is None else self.bare_staff
        if caller == "permitted":
            return self.staff if self.permitted is None else self.permitted
        status: int = getattr(self, caller)
        return status


EARLIER = {"started_at": "{two_hours_ago}", "ended_at": "{one_hour_ago}"}


OPERATIONS = [
    Operation("GET", "/api/timesheets", None, 200, 200, 200),
    Operation("GET", "/api/timesheets?user=alice", None, 200, 403, 200, staff_sees=("alice",)),
    Operation("POST", "/api/timesheets", {"project": 0}, 201, 201, 201),
    Operation("GET", "/api/timesheets/current", None, 200, 200, 404, 404, 404),
    Operation("GET", "/api/timesheets/{mine}", None, 200, 404, 200, staff_sees=("alice",)),
    Operation("POST", "/api/timesheets/{mine}/start", None, 200, 404, 404),
    Operation("POST", "/api/timesheets/{mine}/stop", None, 200, 404, 404),
    Operation("GET", "/api/projects", None, 200, 200, 200),
    Operation("POST", "/api/projects", {"code": "new", "designation": "New"}, 403, 403, 201),
    Operation("GET", "/api/worker", None, 403, 403, 200),
    Operation("POST", "/api/worker/start", None, 403, 403, 200),
    Operation("GET", "/api/me", None, 200, 200, 200),
    Operation(
        "GET", "/api/timesheets/{mine}/segments", None, 200, 404, 200
    ),  # runs carry no description,
    Operation("POST", "/api/timesheets/{mine}/segments", EARLIER, 201, 404, 201),
    Operation("PATCH", "/api/segments/{run}", {"started_at": "{later_start}"}, 200, 404, 200),
    Operation("DELETE", "/api/segments/{run}", None, 204, 404, 204),
    Operation("GET", "/api/reports?from=2026-01-01&to=2026-12-31", None, 200, 200, 200),
    Operation("GET", "/api/reports?from=2026-01-01&to=2026-12-31&user=alice", None, 200, 403, 200),
    Operation("GET", "/api/events", None, 200, 200, 200, stream=True),
    Operation("GET", "/api/events?user=alice", None, 200, 403, 200, stream=True),
    Operation("GET", "/api/webhooks", None, 200, 200, 200),
    # A public address, given as such: nothing to resolve, and no runner sends to it.
    Operation("POST", "/api/webhooks", {"url": "http://93.184.215.14/hook"}, 201, 201, 201),
    # Staff without the permission to delete subscriptions do not see alice's.
    Operation("DELETE", "/api/webhooks/{hook}", None, 204, 404, 404),
]


@dataclass(frozen=True)
class World:
    mine: int
    run: int
    hook: int
    instants: dict[str, str]
    project: int
    secrets: dict[str, str]  # username -> the secret in each of their descriptions
    headers: dict[str, dict[str, str]]  # caller -> request headers


@pytest.fixture
def world(make_user: Callable[..., User], project: Project, token_for: Callable[..., str]) -> World:
    alice, bob = make_user("alice"), make_user("bob")
    sam = make_user("sam", is_staff=True, permissions=API_PERMISSIONS)
    stan = make_user("stan", is_staff=True)
    pat = make_user("pat", permissions=API_PERMISSIONS)
    now = timezone.now()
    secrets = {
        "alice": "alice-secret-4f1d",
        "bob": "bob-secret-9c27",
        "sam": "sam-secret-2b8e",
        "stan": "stan-secret-71aa",
        "pat": "pat-secret-0d3c",
    }
    running: dict[str, int] = {}
    stopped: dict[str, int] = {}
    for person in (alice, bob, sam, stan, pat):
        secret = secrets[person.username]
        for n in range(2):
            timesheet = timesheet_create(
                owner=person, project=project, description=f"{secret} {n}", now=now
            )
            if n == 0 and person in (alice, bob):
                timesheet = timesheet_start(timesheet_id=timesheet.pk, now=now)
            running.setdefault(person.username, timesheet.pk)
            stopped[person.username] = timesheet.pk
    run = segment_add(
        timesheet_id=stopped["alice"],
        started_at=now - timedelta(hours=4),
        ended_at=now - timedelta(hours=3),
        actor=alice,
        now=now,
    )

    def bearer(user: User, **options: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {token_for(user, **options)}"}

    hook = subscription_create(owner=alice, url="http://93.184.215.14/hook").pk
    return World(
        mine=running["alice"],
        run=run.pk,
        instants={
            name: (now - ago).isoformat()
            for name, ago in {
                "two_hours_ago": timedelta(hours=2),
                "one_hour_ago": timedelta(hours=1),
                "later_start": timedelta(hours=3, minutes=30),
            }.items()
        },
        hook=hook,
        project=project.pk,
        secrets=secrets,
        headers={
            "nobody": {},
            "malformed": {"Authorization": "Bearer not-a-token, surely"},
            "expired": bearer(alice, expires_at=now - timedelta(seconds=1)),
            "owner": bearer(alice),
            "other": bearer(bob),
            "staff": bearer(sam),
            "bare_staff": bearer(stan),
            "permitted": bearer(pat),
        },
    )


@pytest.fixture
def idle_runner() -> None:
    """POST /api/worker/start starts a runner: one that leaves the database alone."""

    async def idle(now: datetime) -> int:
        return 0

    process.set_factory(lambda: Runner(jobs=[Job(name="idle", function=idle, interval=60.0)]))


def rows() -> list[list[dict[str, Any]]]:
    """What a refused request must leave as it was (tokens' last use aside)."""
    models: list[type[Model]] = [Project, Timesheet, Segment, Correction, Subscription]
    return [[dict(row) for row in m._default_manager.order_by("pk").values()] for m in models]


arows = sync_to_async(rows)

USERNAMES = {
    "owner": "alice",
    "other": "bob",
    "staff": "sam",
    "bare_staff": "stan",
    "permitted": "pat",
}
POWERFUL = ("staff", "permitted")  # the callers holding the permissions


def test_the_matrix_covers_every_operation_in_the_document(client: Any) -> None:
    document = client.get("/api/openapi.json").json()
    documented = {(m.upper(), p) for p, methods in document["paths"].items() for m in methods}

    covered = {(o.method, o.path.split("?")[0]) for o in OPERATIONS}

    named = {"{timesheet_id}": "{mine}", "{segment_id}": "{run}", "{subscription_id}": "{hook}"}
    for name, placeholder in named.items():
        documented = {(m, p.replace(name, placeholder)) for m, p in documented}
    assert documented == covered


@pytest.mark.usefixtures("idle_runner")
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("operation", OPERATIONS, ids=[f"{o.method} {o.path}" for o in OPERATIONS])
async def test_authorization(world: World, operation: Operation, caller: str) -> None:
    expected = REFUSED.get(caller) or operation.expected(caller)
    path = operation.path.format(mine=world.mine, run=world.run, hook=world.hook)
    body = operation.body
    if body is not None and "project" in body:
        body = {"project": world.project}
    elif body is not None:
        body = {name: value.format(**world.instants) for name, value in body.items()}
    before = await arows()

    response = await AsyncClient().generic(
        operation.method,
        path,
        json.dumps(body).encode() if body is not None else b"",
        content_type="application/json",
        headers=world.headers[caller],
    )

    if operation.stream and expected == 200:
        assert response.status_code == expected
        assert response["Content-Type"].startswith("text/event-stream")
        await response.streaming_content.aclose()  # type: ignore[attr-defined]
        return
    assert response.status_code == expected, response.content
    if expected != 204:
        assert response["Content-Type"].startswith("application/json")
    answer = response.content.decode()
    if expected >= 400:
        assert set(json.loads(answer)) == {"detail"}, answer
        assert await arows() == before, "a refused request changed nothing"
    if expected == 401:
        assert response["WWW-Authenticate"] == 'Bearer realm="api"'
        if caller == "expired":
            assert "expired" in json.loads(answer)["detail"]
    entitled = set()
    if caller in USERNAMES:
        entitled.add(USERNAMES[caller])
        if caller in POWERFUL:
            entitled.update(operation.staff_sees)
    for username, secret in world.secrets.items():
        if username not in entitled:
            assert secret not in answer, f"{caller} was shown {username}'s data: {answer}"
    if expected == 200 and operation.staff_sees and caller in POWERFUL:
        assert world.secrets["alice"] in answer, "staff read the timesheet they asked for"
