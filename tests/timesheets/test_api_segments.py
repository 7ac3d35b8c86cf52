"""Runs over the API: list, add, move and delete them, and ``GET /api/me``."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db.models import Model
from django.test import AsyncClient
from django.utils import timezone

from timesheets.models import Correction, Profile, Project, Segment, Timesheet
from timesheets.services import segment_add, timesheet_create, timesheet_start

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settings_limits")]

JSON = "application/json"


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def api_time(value: datetime) -> str:
    """How the API spells an instant in its answers."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


async def send(client: AsyncClient, method: str, path: str, body: Any = None) -> Any:
    data = b"" if body is None else json.dumps(body).encode()
    return await client.generic(method, path, data, content_type=JSON)


def rows() -> list[list[dict[str, Any]]]:
    models: list[type[Model]] = [Timesheet, Segment, Correction]
    return [[dict(row) for row in m._default_manager.order_by("pk").values()] for m in models]


arows = sync_to_async(rows)


@pytest.fixture
def base() -> datetime:
    """A whole hour a day ago: runs around it lie in the past on any clock."""
    return timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(days=1)


@pytest.fixture
def entry(alice: User, project: Project) -> Timesheet:
    return timesheet_create(owner=alice, project=project, description="design review")


@pytest.fixture
def run(entry: Timesheet, alice: User, base: datetime) -> Segment:
    return segment_add(
        timesheet_id=entry.pk, started_at=base, ended_at=base + timedelta(hours=1), actor=alice
    )


async def test_the_owner_adds_a_run_and_it_counts(
    alice_client: AsyncClient, entry: Timesheet, base: datetime
) -> None:
    start, end = base + timedelta(hours=2), base + timedelta(hours=2, minutes=30)

    response = await send(
        alice_client,
        "POST",
        f"/api/timesheets/{entry.pk}/segments",
        {"started_at": iso(start), "ended_at": iso(end)},
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body == {
        "id": body["id"],
        "timesheet_id": entry.pk,
        "started_at": api_time(start),
        "ended_at": api_time(end),
        "end_reason": "manual",
        "seconds": 1800.0,
    }
    timesheet = await Timesheet.objects.aget(pk=entry.pk)
    assert timesheet.imputed == timedelta(minutes=30)
    correction = await Correction.objects.aget(segment_id=body["id"])
    assert correction.action == Correction.Action.SEGMENT_ADDED


async def test_an_offset_is_understood(
    alice_client: AsyncClient, entry: Timesheet, base: datetime
) -> None:
    start = base.astimezone(timezone.get_fixed_timezone(120))

    response = await send(
        alice_client,
        "POST",
        f"/api/timesheets/{entry.pk}/segments",
        {"started_at": start.isoformat(), "ended_at": iso(base + timedelta(minutes=1))},
    )

    assert response.status_code == 201, response.content
    assert response.json()["started_at"] == api_time(base)


@pytest.mark.parametrize(
    ("started", "ended", "message"),
    [
        (timedelta(hours=2), timedelta(hours=1), "must end after it starts"),
        (timedelta(hours=2), timedelta(hours=2), "must end after it starts"),
        (timedelta(hours=2), timedelta(days=2), "cannot lie in the future"),
        (timedelta(minutes=30), timedelta(hours=2), "would overlap run"),
    ],
    ids=["ends-before", "empty", "future", "overlap"],
)
async def test_impossible_runs_answer_422_and_change_nothing(
    alice_client: AsyncClient,
    run: Segment,
    base: datetime,
    started: timedelta,
    ended: timedelta,
    message: str,
) -> None:
    before = await arows()

    response = await send(
        alice_client,
        "POST",
        f"/api/timesheets/{run.timesheet_id}/segments",
        {"started_at": iso(base + started), "ended_at": iso(base + ended)},
    )

    assert response.status_code == 422
    assert message in response.json()["detail"]
    assert await arows() == before


async def test_an_overlap_names_the_conflicting_entry(
    alice_client: AsyncClient, run: Segment, base: datetime
) -> None:
    response = await send(
        alice_client,
        "POST",
        f"/api/timesheets/{run.timesheet_id}/segments",
        {
            "started_at": iso(base + timedelta(minutes=59)),
            "ended_at": iso(base + timedelta(hours=3)),
        },
    )

    assert response.status_code == 422
    body = response.json()
    assert body["conflict"] == {"timesheet_id": run.timesheet_id, "segment_id": run.pk}
    assert f"run {run.pk} of entry {run.timesheet_id} ('design review')" in body["detail"]


async def test_under_a_limit_of_one_a_persons_other_entries_conflict_too(
    alice: User, project: Project, alice_client: AsyncClient, run: Segment, base: datetime
) -> None:
    other = await sync_to_async(timesheet_create)(owner=alice, project=project, description="")
    body = {"started_at": iso(base), "ended_at": iso(base + timedelta(minutes=10))}

    response = await send(alice_client, "POST", f"/api/timesheets/{other.pk}/segments", body)

    assert response.status_code == 422
    assert response.json()["conflict"]["timesheet_id"] == run.timesheet_id


async def test_under_a_higher_limit_other_entries_may_overlap(
    settings: Any, alice: User, project: Project, alice_client: AsyncClient, run: Segment
) -> None:
    settings.TIMESHEETS_MAX_RUNNING_PER_USER = 2
    other = await sync_to_async(timesheet_create)(owner=alice, project=project, description="")
    body = {
        "started_at": iso(run.started_at),
        "ended_at": iso(run.started_at + timedelta(minutes=10)),
    }

    response = await send(alice_client, "POST", f"/api/timesheets/{other.pk}/segments", body)

    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    "body",
    [
        {"started_at": "2026-01-05T09:00:00", "ended_at": "2026-01-05T10:00:00Z"},
        {"started_at": "yesterday", "ended_at": "2026-01-05T10:00:00Z"},
        {"started_at": "0001-01-01T00:00:00+01:00", "ended_at": "2026-01-05T10:00:00Z"},
        {"started_at": "2026-01-05T09:00:00Z"},
        {"started_at": "2026-01-05T09:00:00Z", "ended_at": None},
        {"started_at": "2026-01-05T09:00:00Z", "ended_at": "2026-01-05T10:00:00Z", "x": 1},
    ],
    ids=["naive", "not-a-date", "before-year-1", "no-end", "null-end", "unknown-field"],
)
async def test_malformed_runs_answer_422(
    alice_client: AsyncClient, entry: Timesheet, body: dict[str, Any]
) -> None:
    before = await arows()

    response = await send(alice_client, "POST", f"/api/timesheets/{entry.pk}/segments", body)

    assert response.status_code == 422
    assert response.json()["detail"].startswith("Invalid request:")
    assert await arows() == before


async def test_the_runs_of_an_entry_in_time_order(
    alice: User, alice_client: AsyncClient, run: Segment, base: datetime
) -> None:
    earlier = await sync_to_async(segment_add)(
        timesheet_id=run.timesheet_id,
        started_at=base - timedelta(hours=3),
        ended_at=base - timedelta(hours=2),
        actor=alice,
    )

    response = await send(alice_client, "GET", f"/api/timesheets/{run.timesheet_id}/segments")

    assert response.status_code == 200
    assert [item["id"] for item in response.json()] == [earlier.pk, run.pk]


async def test_a_running_entrys_open_run_is_listed_without_an_end(
    alice: User, project: Project, alice_client: AsyncClient
) -> None:
    entry = await sync_to_async(timesheet_create)(
        owner=alice, project=project, description="", start=True
    )

    response = await send(alice_client, "GET", f"/api/timesheets/{entry.pk}/segments")

    (item,) = response.json()
    assert item["ended_at"] is None
    assert item["seconds"] is None
    assert item["end_reason"] == ""


async def test_moving_a_runs_end(alice_client: AsyncClient, run: Segment, base: datetime) -> None:
    end = base + timedelta(minutes=45)

    response = await send(alice_client, "PATCH", f"/api/segments/{run.pk}", {"ended_at": iso(end)})

    assert response.status_code == 200, response.content
    assert response.json()["ended_at"] == api_time(end)
    assert response.json()["started_at"] == api_time(base)
    timesheet = await Timesheet.objects.aget(pk=run.timesheet_id)
    assert timesheet.imputed == timedelta(minutes=45)


async def test_a_finished_run_cannot_be_reopened(alice_client: AsyncClient, run: Segment) -> None:
    before = await arows()

    response = await send(alice_client, "PATCH", f"/api/segments/{run.pk}", {"ended_at": None})

    assert response.status_code == 422
    assert "cannot be reopened" in response.json()["detail"]
    assert await arows() == before


async def test_an_empty_change_is_refused(alice_client: AsyncClient, run: Segment) -> None:
    before = await arows()

    response = await send(alice_client, "PATCH", f"/api/segments/{run.pk}", {})

    assert response.status_code == 422
    assert "nothing to change" in response.json()["detail"]
    assert await arows() == before


async def test_the_open_run_stays_open_and_its_start_moves(
    alice: User, project: Project, alice_client: AsyncClient
) -> None:
    entry = await sync_to_async(timesheet_create)(
        owner=alice, project=project, description="", start=True
    )
    segment = await Segment.objects.aget(timesheet_id=entry.pk)
    start = segment.started_at - timedelta(minutes=5)

    response = await send(
        alice_client,
        "PATCH",
        f"/api/segments/{segment.pk}",
        {"started_at": iso(start), "ended_at": None},
    )

    assert response.status_code == 200, response.content
    assert response.json()["ended_at"] is None
    assert response.json()["started_at"] == api_time(start)


async def test_deleting_a_run(alice_client: AsyncClient, run: Segment) -> None:
    response = await send(alice_client, "DELETE", f"/api/segments/{run.pk}")

    assert response.status_code == 204
    assert not await Segment.objects.filter(pk=run.pk).aexists()
    timesheet = await Timesheet.objects.aget(pk=run.timesheet_id)
    assert timesheet.imputed == timedelta(0)
    assert await Correction.objects.filter(
        segment_id=run.pk, action=Correction.Action.SEGMENT_DELETED
    ).aexists()


async def test_the_running_run_cannot_be_deleted(
    alice: User, project: Project, alice_client: AsyncClient
) -> None:
    entry = await sync_to_async(timesheet_create)(
        owner=alice, project=project, description="", start=True
    )
    segment = await Segment.objects.aget(timesheet_id=entry.pk)

    response = await send(alice_client, "DELETE", f"/api/segments/{segment.pk}")

    assert response.status_code == 422
    assert "still running" in response.json()["detail"]
    assert await Segment.objects.filter(pk=segment.pk).aexists()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/timesheets/{entry}/segments", None),
        ("POST", "/api/timesheets/{entry}/segments", "later"),
        ("PATCH", "/api/segments/{run}", {"ended_at": None}),
        ("PATCH", "/api/segments/{run}", "later"),
        ("DELETE", "/api/segments/{run}", None),
    ],
)
async def test_someone_elses_runs_are_not_found(
    bob_client: AsyncClient,
    run: Segment,
    base: datetime,
    method: str,
    path: str,
    body: Any,
) -> None:
    if body == "later":
        body = {
            "started_at": iso(base + timedelta(hours=5)),
            "ended_at": iso(base + timedelta(hours=6)),
        }
    before = await arows()

    response = await send(bob_client, method, path.format(entry=run.timesheet_id, run=run.pk), body)

    assert response.status_code == 404
    assert await arows() == before


@pytest.mark.parametrize("path", ["/api/segments/0", f"/api/segments/{2**63}"])
async def test_ids_out_of_range_are_not_found(alice_client: AsyncClient, path: str) -> None:
    assert (await send(alice_client, "DELETE", path)).status_code == 404


async def test_staff_with_change_timesheet_corrects_anyones_runs_and_is_recorded(
    staff: User, staff_client: AsyncClient, run: Segment, base: datetime
) -> None:
    end = base + timedelta(minutes=20)

    response = await send(staff_client, "PATCH", f"/api/segments/{run.pk}", {"ended_at": iso(end)})

    assert response.status_code == 200, response.content
    correction = await Correction.objects.aget(
        segment_id=run.pk, action=Correction.Action.SEGMENT_CHANGED
    )
    assert correction.actor_id == staff.pk


async def test_staff_without_the_permission_cannot(
    make_user: Callable[..., User],
    client_for: Callable[[User], AsyncClient],
    run: Segment,
    base: datetime,
) -> None:
    reader = await sync_to_async(make_user)(
        "reader", is_staff=True, permissions=["timesheets.view_timesheet"]
    )
    client = await sync_to_async(client_for)(reader)

    listed = await send(client, "GET", f"/api/timesheets/{run.timesheet_id}/segments")
    changed = await send(client, "DELETE", f"/api/segments/{run.pk}")

    assert listed.status_code == 200
    assert changed.status_code == 404
    assert await Segment.objects.filter(pk=run.pk).aexists()


async def test_change_timesheet_alone_reads_and_corrects_like_the_admin(
    make_user: Callable[..., User],
    client_for: Callable[[User], AsyncClient],
    run: Segment,
    base: datetime,
) -> None:
    editor = await sync_to_async(make_user)("editor", permissions=["timesheets.change_timesheet"])
    client = await sync_to_async(client_for)(editor)

    listed = await send(client, "GET", f"/api/timesheets/{run.timesheet_id}/segments")
    entry = await send(client, "GET", f"/api/timesheets/{run.timesheet_id}")
    changed = await send(
        client, "PATCH", f"/api/segments/{run.pk}", {"ended_at": iso(base + timedelta(minutes=5))}
    )

    assert listed.status_code == entry.status_code == changed.status_code == 200


async def test_me(alice: User, alice_client: AsyncClient, staff_client: AsyncClient) -> None:
    await Profile.objects.acreate(user=alice, time_zone="America/New_York")

    mine = await send(alice_client, "GET", "/api/me")
    staffs = await send(staff_client, "GET", "/api/me")

    assert mine.status_code == 200
    assert mine.json() == {
        "id": alice.pk,
        "username": "alice",
        "time_zone": "America/New_York",
        "is_staff": False,
        "permissions": [],
    }
    assert staffs.json()["time_zone"] == "UTC"
    assert staffs.json()["is_staff"] is True
    assert staffs.json()["permissions"] == [
        "timesheets.add_project",
        "timesheets.view_timesheet",
        "timesheets.change_timesheet",
        "timesheets.run_worker",
    ]


async def test_me_needs_credentials() -> None:
    assert (await AsyncClient().get("/api/me")).status_code == 401


def test_starting_after_an_added_run_is_still_possible(
    alice: User, entry: Timesheet, run: Segment
) -> None:
    # A run added by hand in the past leaves the timer free to start now.
    started = timesheet_start(timesheet_id=entry.pk)

    assert started.status == Timesheet.Status.RUNNING
