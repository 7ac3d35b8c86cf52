"""The authorization matrix: every API operation, by every kind of caller, with exact answers.

The callers: nobody, a malformed token, an expired token, the owner of the timesheet in the
path (alice), another person (bob), and staff (sam). Each cell gives the exact status code.
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

from timesheets.models import Project, Segment, Timesheet
from timesheets.services import timesheet_create, timesheet_start
from webhooks.models import Subscription
from webhooks.services import subscription_create
from worker import process
from worker.registry import Job
from worker.runner import Runner

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settings_limits")]

CALLERS = ["nobody", "malformed", "expired", "owner", "other", "staff"]
REFUSED = {"nobody": 401, "malformed": 401, "expired": 401}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # {mine} is alice's running timesheet, {hook} her webhook subscription
    body: dict[str, Any] | None
    owner: int
    other: int
    staff: int
    # Whose data a successful answer may show, besides the caller's own.
    staff_sees: tuple[str, ...] = ()


OPERATIONS = [
    Operation("GET", "/api/timesheets", None, 200, 200, 200),
    Operation("GET", "/api/timesheets?user=alice", None, 200, 403, 200, staff_sees=("alice",)),
    Operation("POST", "/api/timesheets", {"project": 0}, 201, 201, 201),
    Operation("GET", "/api/timesheets/current", None, 200, 200, 404),
    Operation("GET", "/api/timesheets/{mine}", None, 200, 404, 200, staff_sees=("alice",)),
    Operation("POST", "/api/timesheets/{mine}/start", None, 200, 404, 404),
    Operation("POST", "/api/timesheets/{mine}/stop", None, 200, 404, 404),
    Operation("GET", "/api/projects", None, 200, 200, 200),
    Operation("POST", "/api/projects", {"code": "new", "designation": "New"}, 403, 403, 201),
    Operation("GET", "/api/worker", None, 403, 403, 200),
    Operation("POST", "/api/worker/start", None, 403, 403, 200),
    Operation("GET", "/api/webhooks", None, 200, 200, 200),
    # A public address, given as such: nothing to resolve, and no runner sends to it.
    Operation("POST", "/api/webhooks", {"url": "http://93.184.215.14/hook"}, 201, 201, 201),
    # Staff without the permission to delete subscriptions do not see alice's.
    Operation("DELETE", "/api/webhooks/{hook}", None, 204, 404, 404),
]


@dataclass(frozen=True)
class World:
    mine: int
    hook: int
    project: int
    secrets: dict[str, str]  # username -> the secret in each of their descriptions
    headers: dict[str, dict[str, str]]  # caller -> request headers


@pytest.fixture
def world(make_user: Callable[..., User], project: Project, token_for: Callable[..., str]) -> World:
    alice, bob = make_user("alice"), make_user("bob")
    sam = make_user("sam", is_staff=True)
    now = timezone.now()
    secrets = {"alice": "alice-secret-4f1d", "bob": "bob-secret-9c27", "sam": "sam-secret-2b8e"}
    running: dict[str, int] = {}
    for person in (alice, bob, sam):
        secret = secrets[person.username]
        for n in range(2):
            timesheet = timesheet_create(
                owner=person, project=project, description=f"{secret} {n}", now=now
            )
            if n == 0 and person != sam:
                timesheet = timesheet_start(timesheet_id=timesheet.pk, now=now)
            running.setdefault(person.username, timesheet.pk)

    def bearer(user: User, **options: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {token_for(user, **options)}"}

    hook = subscription_create(owner=alice, url="http://93.184.215.14/hook").pk
    return World(
        mine=running["alice"],
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
    models: list[type[Model]] = [Project, Timesheet, Segment, Subscription]
    return [[dict(row) for row in m._default_manager.order_by("pk").values()] for m in models]


arows = sync_to_async(rows)

USERNAMES = {"owner": "alice", "other": "bob", "staff": "sam"}


def test_the_matrix_covers_every_operation_in_the_document(client: Any) -> None:
    document = client.get("/api/openapi.json").json()
    documented = {(m.upper(), p) for p, methods in document["paths"].items() for m in methods}

    covered = {(o.method, o.path.split("?")[0]) for o in OPERATIONS}

    assert {
        (m, p.replace("{timesheet_id}", "{mine}").replace("{subscription_id}", "{hook}"))
        for m, p in documented
    } == covered


@pytest.mark.usefixtures("idle_runner")
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("operation", OPERATIONS, ids=[f"{o.method} {o.path}" for o in OPERATIONS])
async def test_authorization(world: World, operation: Operation, caller: str) -> None:
    expected = REFUSED.get(caller) or getattr(operation, caller)
    path = operation.path.format(mine=world.mine, hook=world.hook)
    body = operation.body
    if body is not None and "project" in body:
        body = {"project": world.project}
    before = await arows()

    response = await AsyncClient().generic(
        operation.method,
        path,
        json.dumps(body).encode() if body is not None else b"",
        content_type="application/json",
        headers=world.headers[caller],
    )

    assert response.status_code == expected, response.content
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
        if caller == "staff":
            entitled.update(operation.staff_sees)
    for username, secret in world.secrets.items():
        if username not in entitled:
            assert secret not in answer, f"{caller} was shown {username}'s data: {answer}"
    if expected == 200 and operation.staff_sees and caller == "staff":
        assert world.secrets["alice"] in answer, "staff read the timesheet they asked for"
