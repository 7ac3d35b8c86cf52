"""Every change of the domain writes its event in its own transaction, in commit order."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction

from events.models import Event
from tests.conftest import T0, at
from timesheets.models import Project, Timesheet
from timesheets.schemas import timesheet_json
from timesheets.selectors import timesheet_read
from timesheets.services import (
    project_create,
    segment_add,
    timesheet_create,
    timesheet_start,
    timesheet_stop,
    timesheet_stop_forgotten,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settings_limits")]


def events() -> list[tuple[str, int | None, int | None, int | None]]:
    return list(Event.objects.values_list("type", "actor_id", "owner_id", "timesheet_id"))


def state(timesheet: Timesheet, *, read_at: float) -> dict[str, Any]:
    current = timesheet_read().get(pk=timesheet.pk)
    current.read_at = at(read_at)
    return timesheet_json(current)


def test_a_start_a_replacing_start_and_a_stop(alice: User, staff: User, project: Project) -> None:
    first = timesheet_create(owner=alice, project=project, description="a", now=at(1))
    second = timesheet_create(owner=alice, project=project, description="b", now=at(2))
    timesheet_start(timesheet_id=first.pk, now=at(10))
    timesheet_start(timesheet_id=second.pk, actor_id=staff.pk, now=at(25))
    timesheet_stop(timesheet_id=second.pk, now=at(40))

    assert events() == [
        ("timesheet.created", alice.pk, alice.pk, first.pk),
        ("timesheet.created", alice.pk, alice.pk, second.pk),
        ("timesheet.started", alice.pk, alice.pk, first.pk),
        ("timesheet.stopped", staff.pk, alice.pk, first.pk),
        ("timesheet.started", staff.pk, alice.pk, second.pk),
        ("timesheet.stopped", alice.pk, alice.pk, second.pk),
    ]
    replaced, started = Event.objects.filter(occurred_at=at(25))
    assert replaced.data == {"timesheet": state(first, read_at=25), "end_reason": "replaced"}
    assert replaced.data["timesheet"]["imputed_seconds"] == 15
    assert started.data == {
        "timesheet": {
            **state(second, read_at=25),
            "status": "running",
            "imputed_seconds": 0.0,
            "accumulated_seconds": 0.0,
            "running_since": "2026-01-05T09:00:25.000000Z",
            "accrued_until": "2026-01-05T09:00:25.000000Z",
            "updated_at": "2026-01-05T09:00:25.000000Z",
        }
    }
    stopped = Event.objects.last()
    assert stopped is not None
    assert stopped.occurred_at == at(40)
    assert stopped.data == {"timesheet": state(second, read_at=40), "end_reason": "user"}


def test_an_automatic_stop_has_no_actor(alice: User, project: Project, settings: Any) -> None:
    settings.TIMESHEETS_MAX_RUNNING_HOURS = 1
    timesheet = timesheet_create(
        owner=alice, project=project, description="", now=at(0), start=True
    )
    timesheet_stop_forgotten(now=at(7200))

    last = Event.objects.last()
    assert last is not None
    assert (last.type, last.actor_id, last.owner_id) == ("timesheet.auto_stopped", None, alice.pk)
    assert last.data["end_reason"] == "auto"
    assert last.data["timesheet"]["imputed_seconds"] == 3600
    assert last.data["timesheet"]["auto_stopped"] is True
    assert last.timesheet_id == timesheet.pk


def test_corrections_and_projects(alice: User, staff: User, project: Project) -> None:
    timesheet = timesheet_create(owner=alice, project=project, description="", now=T0)
    segment_add(
        timesheet_id=timesheet.pk,
        started_at=at(0),
        ended_at=at(30),
        actor=staff,
        now=at(100),
    )
    created = project_create(code="ops", designation="Operations", actor_id=staff.pk, now=at(5))

    added, project_event = Event.objects.filter(type__in=["segment.created", "project.created"])
    assert (added.actor_id, added.owner_id) == (staff.pk, alice.pk)
    assert added.data["timesheet"]["imputed_seconds"] == 30
    assert added.data["segment"]["ended_at"] == "2026-01-05T09:00:30.000000Z"
    assert (project_event.owner_id, project_event.data) == (
        None,
        {"id": created.pk, "code": "ops", "designation": "Operations", "is_active": True},
    )


def test_a_change_rolled_back_leaves_no_event(alice: User, project: Project) -> None:
    timesheet = timesheet_create(owner=alice, project=project, description="", now=T0)
    before = Event.objects.count()

    def start_then_fail() -> None:
        with transaction.atomic():
            timesheet_start(timesheet_id=timesheet.pk, now=at(1))
            raise RuntimeError

    with pytest.raises(RuntimeError):
        start_then_fail()

    assert Event.objects.count() == before
    assert Timesheet.objects.get(pk=timesheet.pk).status == "stopped"


WRITERS = 6
CHANGES = 15  # per writer


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_reader_following_ids_misses_no_event_of_concurrent_writers(
    make_user: Any, project: Project
) -> None:
    """Ids are handed out in commit order: a reader that moves past an id never sees a lower
    one appear afterwards."""
    owners = [make_user(f"w{n}") for n in range(WRITERS)]
    timesheets = [
        timesheet_create(owner=owner, project=project, description="") for owner in owners
    ]
    done = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def read() -> None:
        last = 0
        try:
            while not done.is_set() or Event.objects.filter(id__gt=last).exists():
                for event_id in Event.objects.filter(id__gt=last).values_list("id", flat=True):
                    seen.append(event_id)
                    last = event_id
        except Exception as error:  # noqa: BLE001  (asserted empty below)
            errors.append(error)
        finally:
            connection.close()

    def write(timesheet: Timesheet) -> None:
        try:
            for _ in range(CHANGES):
                timesheet_start(timesheet_id=timesheet.pk)
                timesheet_stop(timesheet_id=timesheet.pk)
        except Exception as error:  # noqa: BLE001  (asserted empty below)
            errors.append(error)
        finally:
            connection.close()

    first_id = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write, args=(t,)) for t in timesheets]
    reader.start()
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    done.set()
    reader.join()

    assert errors == []
    written = list(Event.objects.filter(id__gt=first_id).values_list("id", flat=True))
    assert len(written) == WRITERS * CHANGES * 2
    assert [event_id for event_id in seen if event_id > first_id] == written
