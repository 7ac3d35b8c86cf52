"""The timesheets HTTP API, through Django's async test client, on the real database."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db.models import Model
from django.test import AsyncClient, Client
from django.utils import timezone

from tests.conftest import T0, at
from tests.invariants import assert_invariants
from timesheets.models import ApiToken, Project, Segment, Timesheet
from timesheets.services import (
    timesheet_accrue_running,
    timesheet_create,
    timesheet_start,
    timesheet_stop,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settings_limits")]

JSON = "application/json"
MAX_ID = 2**63 - 1
TIMESHEET_FIELDS = {
    "id",
    "project",
    "description",
    "status",
    "imputed_seconds",
    "accumulated_seconds",
    "accrued_until",
    "running_since",
    "auto_stopped",
    "created_at",
    "updated_at",
}


class Api:
    """An async client that sends a bearer token with every request.

    The token goes with each request because ``AsyncClient(headers=...)`` sends its default
    headers under their WSGI names (``http-authorization``), which authenticate nobody.
    """

    def __init__(self, token: str | None) -> None:
        self.client = AsyncClient()
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}

    async def send(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Any:
        return await self.client.generic(
            method, path, body, content_type=JSON, headers={**self.auth, **(headers or {})}
        )

    async def get(self, path: str) -> Any:
        return await self.send("GET", path)

    async def post(self, path: str, data: Any = None) -> Any:
        return await self.send("POST", path, b"" if data is None else json.dumps(data).encode())


def state() -> list[list[dict[str, Any]]]:
    """Every row the API could touch, to show that a refused request changed nothing."""
    models: list[type[Model]] = [User, Project, Timesheet, Segment, ApiToken]
    return [[dict(row) for row in m._default_manager.order_by("pk").values()] for m in models]


astate = sync_to_async(state)


def new(
    owner: User,
    project: Project,
    *,
    created: float = 0,
    start: float | None = None,
    stop: float | None = None,
    description: str = "work",
) -> Timesheet:
    timesheet = timesheet_create(
        owner=owner, project=project, description=description, now=at(created)
    )
    if start is not None:
        timesheet = timesheet_start(timesheet_id=timesheet.pk, now=at(start))
    if stop is not None:
        timesheet = timesheet_stop(timesheet_id=timesheet.pk, now=at(stop))
    return timesheet


def api_time(moment: datetime) -> str:
    """How the API spells an instant: UTC, six decimals, a trailing Z."""
    return moment.astimezone(T0.tzinfo).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def project_json(project: Project) -> dict[str, Any]:
    return {
        "id": project.pk,
        "code": project.code,
        "designation": project.designation,
        "is_active": project.is_active,
    }


@pytest.fixture
def api_for(token_for: Callable[[User], str]) -> Callable[[User], Api]:
    return lambda user: Api(token_for(user))


@pytest.fixture
def as_alice(alice: User, api_for: Callable[[User], Api]) -> Api:
    return api_for(alice)


@pytest.fixture
def as_staff(staff: User, api_for: Callable[[User], Api]) -> Api:
    return api_for(staff)


@pytest.fixture
def archived(db: None) -> Project:
    return Project.objects.create(code="old", designation="Old work", is_active=False)


@pytest.fixture
def other_project(db: None) -> Project:
    return Project.objects.create(code="beta", designation="Beta test")


class TestCreate:
    async def test_creates_a_stopped_timesheet_for_the_caller(
        self, as_alice: Api, alice: User, project: Project
    ) -> None:
        response = await as_alice.post(
            "/api/timesheets", {"project": project.pk, "description": "  Write specs  "}
        )

        assert response.status_code == 201, response.content
        body = response.json()
        assert set(body) == TIMESHEET_FIELDS
        assert body["project"] == project_json(project)
        assert body["description"] == "Write specs"
        assert body["status"] == "stopped"
        assert (body["imputed_seconds"], body["accumulated_seconds"]) == (0, 0)
        assert (body["accrued_until"], body["running_since"]) == (None, None)
        timesheet = await Timesheet.objects.aget(pk=body["id"])
        assert timesheet.owner_id == alice.pk
        assert timesheet.description == "Write specs"
        assert body["created_at"] == api_time(timesheet.created_at)
        assert not await Segment.objects.aexists()

    async def test_the_description_is_optional(self, as_alice: Api, project: Project) -> None:
        response = await as_alice.post("/api/timesheets", {"project": project.pk})

        assert response.status_code == 201
        assert response.json()["description"] == ""

    async def test_start_true_starts_the_timer_at_once(
        self, as_alice: Api, project: Project
    ) -> None:
        before = timezone.now()
        response = await as_alice.post("/api/timesheets", {"project": project.pk, "start": True})
        after = timezone.now()

        assert response.status_code == 201
        body = response.json()
        assert body["status"] == "running"
        since = datetime.fromisoformat(body["running_since"])
        assert before <= since <= after
        assert body["accrued_until"] == body["running_since"]
        segment = await Segment.objects.aget(timesheet_id=body["id"])
        assert (segment.started_at, segment.ended_at) == (since, None)
        current = await as_alice.get("/api/timesheets/current")
        assert current.json()["id"] == body["id"]

    async def test_starting_a_new_one_stops_the_running_one(
        self, as_alice: Api, alice: User, project: Project
    ) -> None:
        old = await sync_to_async(timesheet_create)(
            owner=alice, project=project, description="", now=timezone.now(), start=True
        )

        response = await as_alice.post("/api/timesheets", {"project": project.pk, "start": True})

        assert response.status_code == 201
        old = await Timesheet.objects.aget(pk=old.pk)
        assert old.status == Timesheet.Status.STOPPED
        segment = await Segment.objects.aget(timesheet_id=old.pk)
        assert segment.end_reason == Segment.EndReason.REPLACED


class TestRepresentation:
    async def test_a_stopped_timesheet_to_the_microsecond(
        self, as_alice: Api, alice: User, project: Project
    ) -> None:
        timesheet = await sync_to_async(new)(
            alice, project, created=0.123456, start=1.000001, stop=3.654321
        )

        response = await as_alice.get(f"/api/timesheets/{timesheet.pk}")

        assert response.status_code == 200
        imputed = (at(3.654321) - at(1.000001)).total_seconds()
        assert response.json() == {
            "id": timesheet.pk,
            "project": project_json(project),
            "description": "work",
            "status": "stopped",
            "imputed_seconds": imputed,
            "accumulated_seconds": imputed,
            "accrued_until": None,
            "running_since": None,
            "auto_stopped": False,
            "created_at": "2026-01-05T09:00:00.123456Z",
            "updated_at": "2026-01-05T09:00:03.654321Z",
        }

    async def test_a_running_timesheet_round_trips_its_instants_exactly(
        self, as_alice: Api, alice: User, project: Project
    ) -> None:
        timesheet = await sync_to_async(new)(alice, project, start=1.000001)
        await sync_to_async(timesheet_accrue_running)(now=at(7.999999))

        body = (await as_alice.get(f"/api/timesheets/{timesheet.pk}")).json()

        stored = await Timesheet.objects.aget(pk=timesheet.pk)
        assert stored.running_since == at(1.000001)
        assert datetime.fromisoformat(body["running_since"]) == stored.running_since
        assert datetime.fromisoformat(body["accrued_until"]) == stored.accrued_until == at(7.999999)
        assert body["running_since"] == "2026-01-05T09:00:01.000001Z"
        assert body["imputed_seconds"] == timedelta(seconds=6, microseconds=999998).total_seconds()

    async def test_whole_seconds_still_have_six_decimals(
        self, as_alice: Api, alice: User, project: Project
    ) -> None:
        timesheet = await sync_to_async(new)(alice, project, created=0, start=60)

        body = (await as_alice.get(f"/api/timesheets/{timesheet.pk}")).json()

        assert body["created_at"] == "2026-01-05T09:00:00.000000Z"
        assert body["running_since"] == "2026-01-05T09:01:00.000000Z"

    async def test_accumulated_seconds_is_the_live_value(
        self, as_alice: Api, alice: User, project: Project, settings: Any
    ) -> None:
        settings.TIMESHEETS_MAX_RUNNING_HOURS = 0
        started = timezone.now() - timedelta(seconds=100)
        timesheet = await sync_to_async(timesheet_create)(
            owner=alice, project=project, description="", now=started
        )
        await sync_to_async(timesheet_start)(timesheet_id=timesheet.pk, now=started)

        before = timezone.now()
        body = (await as_alice.get(f"/api/timesheets/{timesheet.pk}")).json()
        after = timezone.now()

        assert body["imputed_seconds"] == 0
        assert (
            (before - started).total_seconds()
            <= body["accumulated_seconds"]
            <= (after - started).total_seconds()
        )

    async def test_a_run_past_the_maximum_counts_only_the_maximum(
        self, as_alice: Api, alice: User, project: Project
    ) -> None:
        timesheet = await sync_to_async(new)(alice, project, start=0)

        body = (await as_alice.get(f"/api/timesheets/{timesheet.pk}")).json()

        assert body["accumulated_seconds"] == 12 * 3600
        assert body["status"] == "running"


class TestList:
    @pytest.fixture
    def three(self, alice: User, bob: User, project: Project) -> list[Timesheet]:
        new(bob, project, created=15)
        return [new(alice, project, created=seconds) for seconds in (0, 10, 20)]

    async def test_own_timesheets_newest_first_with_a_count(
        self, as_alice: Api, three: list[Timesheet]
    ) -> None:
        response = await as_alice.get("/api/timesheets")

        assert response.status_code == 200
        body = response.json()
        assert [item["id"] for item in body["items"]] == [t.pk for t in reversed(three)]
        assert (body["count"], body["limit"], body["offset"]) == (3, 50, 0)
        assert all(set(item) == TIMESHEET_FIELDS for item in body["items"])

    @pytest.mark.parametrize(
        ("query", "expected", "limit", "offset"),
        [
            ("limit=2", [2, 1], 2, 0),
            ("limit=2&offset=1", [1, 0], 2, 1),
            ("offset=2", [0], 50, 2),
            ("offset=3", [], 50, 3),
            ("limit=200", [2, 1, 0], 200, 0),
            (f"offset={MAX_ID}", [], 50, MAX_ID),
        ],
    )
    async def test_pages(
        self,
        as_alice: Api,
        three: list[Timesheet],
        query: str,
        expected: list[int],
        limit: int,
        offset: int,
    ) -> None:
        body = (await as_alice.get(f"/api/timesheets?{query}")).json()

        assert [item["id"] for item in body["items"]] == [three[i].pk for i in expected]
        assert (body["count"], body["limit"], body["offset"]) == (3, limit, offset)

    async def test_filters_by_status_and_project(
        self, as_alice: Api, alice: User, project: Project, other_project: Project
    ) -> None:
        stopped = await sync_to_async(new)(alice, project, created=0)
        running = await sync_to_async(new)(alice, project, created=1, start=1)
        elsewhere = await sync_to_async(new)(alice, other_project, created=2)

        async def ids(query: str) -> list[int]:
            body = (await as_alice.get(f"/api/timesheets?{query}")).json()
            assert body["count"] == len(body["items"])
            return [item["id"] for item in body["items"]]

        assert await ids("status=running") == [running.pk]
        assert await ids("status=stopped") == [elsewhere.pk, stopped.pk]
        assert await ids(f"project={project.pk}") == [running.pk, stopped.pk]
        assert await ids(f"project={other_project.pk}&status=running") == []
        assert await ids(f"project={other_project.pk}&status=stopped") == [elsewhere.pk]

    async def test_staff_list_another_persons_timesheets(
        self, as_staff: Api, three: list[Timesheet]
    ) -> None:
        body = (await as_staff.get("/api/timesheets?user=alice")).json()

        assert [item["id"] for item in body["items"]] == [t.pk for t in reversed(three)]
        assert body["count"] == 3
        assert (await as_staff.get("/api/timesheets")).json()["count"] == 0

    async def test_naming_oneself_is_allowed(self, as_alice: Api, three: list[Timesheet]) -> None:
        response = await as_alice.get("/api/timesheets?user=alice")

        assert response.status_code == 200
        assert response.json()["count"] == 3


class TestOne:
    async def test_own_timesheet(self, as_alice: Api, alice: User, project: Project) -> None:
        timesheet = await sync_to_async(new)(alice, project)

        response = await as_alice.get(f"/api/timesheets/{timesheet.pk}")

        assert response.status_code == 200
        assert response.json()["id"] == timesheet.pk

    async def test_staff_read_anyones(self, as_staff: Api, alice: User, project: Project) -> None:
        timesheet = await sync_to_async(new)(alice, project)

        response = await as_staff.get(f"/api/timesheets/{timesheet.pk}")

        assert response.status_code == 200
        assert response.json()["id"] == timesheet.pk

    async def test_another_persons_looks_exactly_like_a_missing_one(
        self, as_alice: Api, bob: User, project: Project
    ) -> None:
        bobs = await sync_to_async(new)(bob, project)
        missing = bobs.pk + 1000

        for action in ("", "/start", "/stop"):
            method = "GET" if not action else "POST"
            theirs = await as_alice.send(method, f"/api/timesheets/{bobs.pk}{action}")
            nothing = await as_alice.send(method, f"/api/timesheets/{missing}{action}")

            assert theirs.status_code == nothing.status_code == 404
            assert theirs.json() == {"detail": f"No timesheet with id {bobs.pk}."}
            assert nothing.json() == {"detail": f"No timesheet with id {missing}."}
            assert set(theirs.headers) == set(nothing.headers)


class TestStartStop:
    async def test_start_then_stop(self, as_alice: Api, alice: User, project: Project) -> None:
        timesheet = await sync_to_async(new)(alice, project)

        started = await as_alice.post(f"/api/timesheets/{timesheet.pk}/start")
        assert started.status_code == 200
        assert started.json()["status"] == "running"
        since = datetime.fromisoformat(started.json()["running_since"])

        stopped = await as_alice.post(f"/api/timesheets/{timesheet.pk}/stop")
        assert stopped.status_code == 200
        body = stopped.json()
        assert body["status"] == "stopped"
        assert body["running_since"] is None
        segment = await Segment.objects.aget(timesheet_id=timesheet.pk)
        assert segment.started_at == since
        assert segment.end_reason == Segment.EndReason.USER
        assert segment.ended_at is not None
        assert body["imputed_seconds"] == (segment.ended_at - since).total_seconds()

    async def test_starting_a_running_timesheet_changes_nothing(
        self, as_alice: Api, alice: User, project: Project
    ) -> None:
        timesheet = await sync_to_async(new)(alice, project, start=5)
        await as_alice.get("/api/timesheets")  # the token's first use is recorded
        before = await astate()

        response = await as_alice.post(f"/api/timesheets/{timesheet.pk}/start")

        assert response.status_code == 200
        assert response.json()["running_since"] == api_time(at(5))
        assert await astate() == before

    async def test_stopping_a_stopped_timesheet_is_a_successful_no_op(
        self, as_alice: Api, alice: User, project: Project
    ) -> None:
        timesheet = await sync_to_async(new)(alice, project, start=5, stop=65)
        await as_alice.get("/api/timesheets")  # the token's first use is recorded
        before = await astate()

        response = await as_alice.post(f"/api/timesheets/{timesheet.pk}/stop")

        assert response.status_code == 200
        assert response.json()["status"] == "stopped"
        assert response.json()["imputed_seconds"] == 60
        assert await astate() == before

    async def test_staff_cannot_start_or_stop_anothers(
        self, as_staff: Api, alice: User, project: Project
    ) -> None:
        stopped = await sync_to_async(new)(alice, project)
        running = await sync_to_async(new)(alice, project, start=0)
        await as_staff.get("/api/timesheets")  # the token's first use is recorded
        before = await astate()

        assert (await as_staff.post(f"/api/timesheets/{stopped.pk}/start")).status_code == 404
        assert (await as_staff.post(f"/api/timesheets/{running.pk}/stop")).status_code == 404
        assert await astate() == before

    async def test_an_archived_project_cannot_be_started(
        self, as_alice: Api, alice: User, project: Project
    ) -> None:
        timesheet = await sync_to_async(new)(alice, project)
        await Project.objects.filter(pk=project.pk).aupdate(is_active=False)
        await as_alice.get("/api/timesheets")
        before = await astate()

        response = await as_alice.post(f"/api/timesheets/{timesheet.pk}/start")

        assert response.status_code == 409
        assert "archived" in response.json()["detail"]
        assert await astate() == before


class TestCurrent:
    async def test_none_running_is_404(self, as_alice: Api, alice: User, project: Project) -> None:
        await sync_to_async(new)(alice, project)

        response = await as_alice.get("/api/timesheets/current")

        assert response.status_code == 404
        assert response.json() == {"detail": "You have no running timesheet."}

    async def test_the_running_one(
        self, as_alice: Api, alice: User, bob: User, project: Project
    ) -> None:
        await sync_to_async(new)(alice, project)
        running = await sync_to_async(new)(alice, project, start=3)
        await sync_to_async(new)(bob, project, start=4)

        response = await as_alice.get("/api/timesheets/current")

        assert response.status_code == 200
        assert response.json()["id"] == running.pk
        assert response.json()["status"] == "running"


class TestProjects:
    async def test_anyone_lists_the_active_ones_by_code(
        self, as_alice: Api, project: Project, other_project: Project, archived: Project
    ) -> None:
        response = await as_alice.get("/api/projects")

        assert response.status_code == 200
        assert response.json() == [project_json(project), project_json(other_project)]

    async def test_include_inactive_adds_the_archived_ones(
        self, as_alice: Api, project: Project, other_project: Project, archived: Project
    ) -> None:
        response = await as_alice.get("/api/projects?include_inactive=true")

        assert [p["code"] for p in response.json()] == ["acme", "beta", "old"]
        assert response.json()[2] == project_json(archived)

    async def test_staff_create_one(self, as_staff: Api) -> None:
        response = await as_staff.post(
            "/api/projects", {"code": "new-1", "designation": " New project "}
        )

        assert response.status_code == 201
        project = await Project.objects.aget(code="new-1")
        assert response.json() == project_json(project)
        assert project.designation == "New project"
        assert project.is_active

    async def test_staff_create_an_archived_one(self, as_staff: Api) -> None:
        response = await as_staff.post(
            "/api/projects", {"code": "done", "designation": "Done", "is_active": False}
        )

        assert response.status_code == 201
        assert not (await Project.objects.aget(code="done")).is_active


def test_healthz_answers_without_auth_or_database(
    client: Client, django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(0):
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


class TestOpenApi:
    async def test_the_schema_lists_every_endpoint(self) -> None:
        response = await AsyncClient().get("/api/openapi.json")

        assert response.status_code == 200
        schema = json.loads(response.content)
        operations = {
            (path, method) for path, methods in schema["paths"].items() for method in methods
        }
        assert {
            ("/api/timesheets", "get"),
            ("/api/timesheets", "post"),
            ("/api/timesheets/current", "get"),
            ("/api/timesheets/{timesheet_id}", "get"),
            ("/api/timesheets/{timesheet_id}/start", "post"),
            ("/api/timesheets/{timesheet_id}/stop", "post"),
            ("/api/projects", "get"),
            ("/api/projects", "post"),
        } <= operations
        security = schema["components"]["securitySchemes"]
        assert {"type": "http", "scheme": "bearer"}.items() <= security["BearerToken"].items()

    async def test_the_interactive_docs(self) -> None:
        response = await AsyncClient().get("/api/docs")

        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/html")
        assert b"/api/openapi.json" in response.content


# --- Bad input ----------------------------------------------------------------------------
#
# Every case runs against the same world: alice's timesheet (mine), bob's (theirs), an active
# and an archived project. Templates name them as %(mine)d, %(theirs)d, %(project)d and
# %(archived)d. Each refused request must answer JSON with a detail, never 5xx, and leave
# every row as it was.

BIG = 2**70
DIGITS = "9" * 5000
KIB = 1024


@pytest.fixture
def world(
    alice: User, bob: User, staff: User, project: Project, archived: Project
) -> dict[str, int]:
    return {
        "mine": new(alice, project, start=0).pk,
        "theirs": new(bob, project).pk,
        "project": project.pk,
        "archived": archived.pk,
    }


@pytest.fixture
def callers(
    world: dict[str, int], alice: User, staff: User, api_for: Callable[[User], Api]
) -> dict[str, Api]:
    return {"alice": api_for(alice), "staff": api_for(staff), "nobody": Api(None)}


def body(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")


def fill[T: (str, bytes)](template: T, world: dict[str, int]) -> T:
    """Put the world's ids in place of %(name)d; nothing else in the template is touched."""
    if isinstance(template, bytes):
        return re.sub(rb"%\((\w+)\)d", lambda m: str(world[m[1].decode()]).encode(), template)
    return re.sub(r"%\((\w+)\)d", lambda m: str(world[m[1]]), template)


REFUSED = [
    # Bodies of POST /api/timesheets
    ("{", 422, "body", "malformed"),
    ('{"project": }', 422, "body", "malformed-value"),
    (b'{"project": %(project)d, "description": "\xff"}', 422, "body", "invalid-utf8"),
    (b"\xff\xfe\x00", 422, "body", "garbage"),
    ("[" * 60_000, 422, "body", "nested-60000"),
    ('{"a": [' * 9_000, 422, "body", "nested-objects"),
    ("[" * 100_000, 413, None, "nested-100000-is-over-64KiB"),
    ("[1]", 422, "body", "array"),
    ('"x"', 422, "body", "string"),
    ("null", 422, "body", "null"),
    ("1", 422, "body", "number"),
    ("", 422, "body", "empty"),
    ('{"description": "x"}', 422, "project", "project-missing"),
    ('{"project": "abc"}', 422, "project", "project-text"),
    ('{"project": null}', 422, "project", "project-null"),
    ('{"project": 1.5}', 422, "project", "project-fraction"),
    (f'{{"project": {BIG}}}', 422, "project", "project-2**70"),
    ('{"project": 1e400}', 422, "project", "project-1e400"),
    (f'{{"project": {DIGITS}}}', 422, "body", "project-5000-digits"),
    ('{"project": -1}', 422, "project", "project-negative"),
    ('{"project": 0}', 422, "project", "project-zero"),
    (f'{{"project": {MAX_ID + 1}}}', 422, "project", "project-over-bigint"),
    ('{"project": 999999}', 422, None, "project-unknown"),
    ('{"project": %(archived)d}', 409, None, "project-archived"),
    ('{"project": %(project)d, "description": "a\\u0000b"}', 422, "description", "nul"),
    ('{"project": %(project)d, "description": "\\ud800"}', 422, "description", "surrogate"),
    ('{"project": %(project)d, "description": "\ud800"}', 422, "body", "surrogate-bytes"),
    ('{"project": %(project)d, "description": "' + "x" * 501 + '"}', 422, "description", "long"),
    ('{"project": %(project)d, "description": 5}', 422, "description", "description-number"),
    ('{"project": %(project)d, "start": "maybe"}', 422, "start", "start-maybe"),
    ('{"project": %(project)d, "start": true, "pad": "' + "x" * 64 * KIB + '"}', 413, None, "big"),
]


@pytest.mark.parametrize(
    ("template", "status", "field"),
    [pytest.param(*case[:3], id=case[3]) for case in REFUSED],
)
async def test_refused_timesheet_bodies(
    callers: dict[str, Api], world: dict[str, int], template: str, status: int, field: str | None
) -> None:
    await refused(callers["alice"], "POST", "/api/timesheets", body(template), world, status, field)


PROJECT_BODIES = [
    ('{"code": "a b", "designation": "x"}', 422, "code", "code-space"),
    ('{"code": "", "designation": "x"}', 422, "code", "code-empty"),
    ('{"code": "%s", "designation": "x"}' % ("c" * 33), 422, "code", "code-long"),
    ('{"code": "a\\u0000", "designation": "x"}', 422, "code", "code-nul"),
    (f'{{"code": {BIG}, "designation": "x"}}', 422, "code", "code-number"),
    ('{"designation": "x"}', 422, "code", "code-missing"),
    ('{"code": "ok", "designation": ""}', 422, "designation", "designation-empty"),
    ('{"code": "ok", "designation": "   "}', 422, "designation", "designation-blank"),
    ('{"code": "ok", "designation": "a\\u0000"}', 422, "designation", "designation-nul"),
    ('{"code": "ok", "designation": "\\udfff"}', 422, "designation", "designation-surrogate"),
    ('{"code": "ok", "designation": "%s"}' % ("d" * 201), 422, "designation", "designation-long"),
    ('{"code": "ok", "designation": "x", "is_active": "maybe"}', 422, "is_active", "active"),
    ('{"code": "acme", "designation": "Again"}', 409, None, "code-taken"),
    ("[]", 422, "body", "array"),
]


@pytest.mark.parametrize(
    ("template", "status", "field"),
    [pytest.param(*case[:3], id=case[3]) for case in PROJECT_BODIES],
)
async def test_refused_project_bodies(
    callers: dict[str, Api], world: dict[str, int], template: str, status: int, field: str | None
) -> None:
    await refused(callers["staff"], "POST", "/api/projects", body(template), world, status, field)


REQUESTS = [
    # caller, method, path, status, field
    ("alice", "GET", "/api/timesheets?limit=0", 422, "limit"),
    ("alice", "GET", "/api/timesheets?limit=201", 422, "limit"),
    ("alice", "GET", "/api/timesheets?limit=-1", 422, "limit"),
    ("alice", "GET", "/api/timesheets?limit=abc", 422, "limit"),
    ("alice", "GET", f"/api/timesheets?limit={BIG}", 422, "limit"),
    ("alice", "GET", f"/api/timesheets?limit={DIGITS}", 422, "limit"),
    ("alice", "GET", "/api/timesheets?limit=1e400", 422, "limit"),
    ("alice", "GET", "/api/timesheets?offset=-1", 422, "offset"),
    ("alice", "GET", f"/api/timesheets?offset={MAX_ID + 1}", 422, "offset"),
    ("alice", "GET", f"/api/timesheets?offset={DIGITS}", 422, "offset"),
    ("alice", "GET", "/api/timesheets?offset=1e400", 422, "offset"),
    ("alice", "GET", "/api/timesheets?project=1e400", 422, "project"),
    ("alice", "GET", "/api/timesheets?project=abc", 422, "project"),
    ("alice", "GET", "/api/timesheets?project=0", 422, "project"),
    ("alice", "GET", f"/api/timesheets?project={BIG}", 422, "project"),
    ("alice", "GET", f"/api/timesheets?project={DIGITS}", 422, "project"),
    ("alice", "GET", "/api/timesheets?status=paused", 422, "status"),
    ("alice", "GET", "/api/timesheets?user=bob", 403, None),
    ("alice", "GET", "/api/timesheets?user=nobody", 403, None),
    ("staff", "GET", "/api/timesheets?user=nobody", 422, None),
    ("staff", "GET", "/api/timesheets?user=a%00b", 422, "user"),
    ("staff", "GET", f"/api/timesheets?user={'u' * 151}", 422, "user"),
    ("alice", "GET", "/api/projects?include_inactive=maybe", 422, "include_inactive"),
    ("alice", "POST", "/api/projects", 403, None),
    # Ids in the path
    ("alice", "GET", "/api/timesheets/%(theirs)d", 404, None),
    ("alice", "GET", "/api/timesheets/0", 404, None),
    ("alice", "GET", "/api/timesheets/-1", 404, None),
    ("alice", "GET", f"/api/timesheets/{MAX_ID}", 404, None),
    ("alice", "GET", f"/api/timesheets/{MAX_ID + 1}", 404, None),
    ("alice", "GET", f"/api/timesheets/{BIG}", 404, None),
    ("alice", "GET", f"/api/timesheets/{DIGITS}", 404, None),
    ("alice", "GET", "/api/timesheets/1.5", 404, None),
    ("alice", "GET", "/api/timesheets/1e400", 404, None),
    ("alice", "GET", "/api/timesheets/abc", 404, None),
    ("alice", "POST", "/api/timesheets/%(theirs)d/start", 404, None),
    ("alice", "POST", "/api/timesheets/%(theirs)d/stop", 404, None),
    ("alice", "POST", f"/api/timesheets/{BIG}/start", 404, None),
    ("alice", "POST", f"/api/timesheets/{MAX_ID + 1}/stop", 404, None),
    ("alice", "POST", "/api/timesheets/-1/stop", 404, None),
    ("staff", "POST", "/api/timesheets/%(mine)d/stop", 404, None),
    ("staff", "POST", "/api/timesheets/%(theirs)d/start", 404, None),
    # Unknown paths
    ("alice", "GET", "/api/nothing", 404, None),
    ("alice", "POST", "/api/timesheets/%(mine)d/pause", 404, None),
    ("nobody", "GET", "/api/projects/1", 404, None),
    # No credentials
    ("nobody", "GET", "/api/timesheets", 401, None),
    ("nobody", "POST", "/api/timesheets", 401, None),
    ("nobody", "GET", "/api/timesheets/%(mine)d", 401, None),
    ("nobody", "POST", "/api/timesheets/%(mine)d/stop", 401, None),
    ("nobody", "GET", "/api/timesheets/current", 401, None),
    ("nobody", "GET", "/api/projects", 401, None),
    ("nobody", "POST", "/api/projects", 401, None),
]


@pytest.mark.parametrize(
    ("caller", "method", "path", "status", "field"),
    [pytest.param(*case, id=f"{case[0]}-{case[1]}-{case[2][:60]}") for case in REQUESTS],
)
async def test_refused_requests(
    callers: dict[str, Api],
    world: dict[str, int],
    caller: str,
    method: str,
    path: str,
    status: int,
    field: str | None,
) -> None:
    data = b'{"code": "fine", "designation": "Fine"}' if path == "/api/projects" else b""
    await refused(callers[caller], method, fill(path, world), data, world, status, field)


WRONG_METHODS = [
    ("/api/timesheets", ["PUT", "DELETE", "PATCH"], {"GET", "POST"}),
    ("/api/timesheets/current", ["POST", "PUT", "DELETE"], {"GET"}),
    ("/api/timesheets/%(mine)d", ["POST", "PUT", "DELETE", "PATCH"], {"GET"}),
    ("/api/timesheets/%(mine)d/start", ["GET", "PUT", "DELETE"], {"POST"}),
    ("/api/timesheets/%(mine)d/stop", ["GET", "PATCH"], {"POST"}),
    ("/api/projects", ["PUT", "DELETE"], {"GET", "POST"}),
    ("/api/openapi.json", ["POST", "PUT", "DELETE"], {"GET", "HEAD"}),
    ("/api/docs", ["POST", "DELETE"], {"GET", "HEAD"}),
    ("/api/", ["POST", "DELETE"], {"GET", "HEAD"}),  # GET: a redirect to the docs
]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        pytest.param(method, path, allowed, id=f"{method}-{path}")
        for path, methods, allowed in WRONG_METHODS
        for method in methods
    ],
)
async def test_wrong_methods_are_405_with_allow(
    callers: dict[str, Api], world: dict[str, int], method: str, path: str, allowed: set[str]
) -> None:
    response = await refused(callers["alice"], method, fill(path, world), b"", world, 405, None)

    assert {m.strip() for m in response["Allow"].split(",")} == allowed
    assert method in response.json()["detail"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_wrong_methods_on_the_health_check_are_405_in_json(
    callers: dict[str, Api], world: dict[str, int], method: str
) -> None:
    response = await refused(callers["nobody"], method, "/healthz", b"", world, 405, None)

    assert "GET" in {m.strip() for m in response["Allow"].split(",")}


async def refused(
    api: Api,
    method: str,
    path: str,
    data: bytes,
    world: dict[str, int],
    status: int,
    field: str | None,
) -> Any:
    """Send a request that must be refused; check the answer and that nothing changed."""
    data = fill(data, world)
    await api.get("/api/timesheets/current")  # the token's first use is recorded before
    before = await astate()

    response = await api.send(method, path, data)

    assert response.status_code < 500
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith(JSON)
    answer = json.loads(response.content)
    assert isinstance(answer, dict)
    assert isinstance(answer["detail"], str)
    assert answer["detail"]
    if field is not None:
        assert any(field in error["loc"] for error in answer["errors"]), answer
    assert await astate() == before
    return response


@pytest.mark.postgresql
class TestStatements:
    """What each request sends to PostgreSQL, transaction control aside.

    Every invariant is kept in these few: a start locks its person and their running
    timesheets, then one statement replaces, starts and opens the run; a stop is one statement.
    """

    IGNORED = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")

    async def sent(self, api: Api, method: str, path: str) -> list[str]:
        from django.db import DEFAULT_DB_ALIAS, connections
        from django.test.utils import CaptureQueriesContext

        # On the connection of the thread where the views' database work runs (``connection``
        # itself would resolve to this event loop's thread).
        queries = await sync_to_async(
            lambda: CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]).__enter__()
        )()
        try:
            response = await api.send(method, path)
        finally:
            await sync_to_async(queries.__exit__)(None, None, None)
        assert response.status_code == 200, response.content
        return [
            query["sql"]
            for query in queries.captured_queries
            if not query["sql"].startswith(self.IGNORED)
        ]

    async def test_start_stop_and_get(self, as_alice: Api, alice: User, project: Project) -> None:
        first = await sync_to_async(new)(alice, project)
        second = await sync_to_async(new)(alice, project)
        # The first request of a token writes when it was used (at most once a minute).
        assert (await as_alice.get(f"/api/timesheets/{first.pk}")).status_code == 200

        started = await self.sent(as_alice, "POST", f"/api/timesheets/{first.pk}/start")
        replacing = await self.sent(as_alice, "POST", f"/api/timesheets/{second.pk}/start")
        read = await self.sent(as_alice, "GET", f"/api/timesheets/{second.pk}")
        stopped = await self.sent(as_alice, "POST", f"/api/timesheets/{second.pk}/stop")
        stopped_again = await self.sent(as_alice, "POST", f"/api/timesheets/{second.pk}/stop")

        assert 1 <= len(started) <= 5, started
        assert 1 <= len(replacing) <= 5, replacing
        assert 1 <= len(read) <= 2, read
        assert 1 <= len(stopped) <= 3, stopped
        assert 1 <= len(stopped_again) <= 3, stopped_again
        await sync_to_async(assert_invariants)(now=timezone.now())
