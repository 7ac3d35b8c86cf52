"""The database itself refuses states the domain must never reach."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, transaction

from tests.conftest import T0, at
from timesheets.models import Project, Segment, Timesheet
from timesheets.services import timesheet_create, timesheet_start

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settings_limits")]


def running(owner: Any, project: Project) -> Timesheet:
    timesheet = timesheet_create(owner=owner, project=project, description="", now=T0)
    return timesheet_start(timesheet_id=timesheet.pk, now=at(1))


def refused(**changes: Any) -> None:
    """Apply changes to every timesheet and expect the database to refuse them."""
    with pytest.raises(IntegrityError), transaction.atomic():
        Timesheet.objects.update(**changes)


def test_imputed_is_never_negative(alice: Any, project: Project) -> None:
    running(alice, project)
    refused(imputed=timedelta(microseconds=-1))


def test_a_running_timesheet_has_a_watermark(alice: Any, project: Project) -> None:
    running(alice, project)
    refused(accrued_until=None)
    refused(accrued_until=at(0))  # before the run started


def test_a_stopped_timesheet_has_no_watermark(alice: Any, project: Project) -> None:
    timesheet_create(owner=alice, project=project, description="", now=T0)
    refused(accrued_until=at(5))
    refused(slot=1)


def test_two_running_timesheets_cannot_share_a_slot(alice: Any, project: Project) -> None:
    first = running(alice, project)
    second = timesheet_create(owner=alice, project=project, description="", now=T0)

    with pytest.raises(IntegrityError), transaction.atomic():
        Timesheet.objects.filter(pk=second.pk).update(
            status="running", accrued_until=at(2), running_since=at(2), slot=first.slot
        )


def test_a_timesheet_has_one_open_segment_at_most(alice: Any, project: Project) -> None:
    timesheet = running(alice, project)

    with (
        pytest.raises(IntegrityError, match=r"segment_one_open_per_timesheet|UNIQUE"),
        transaction.atomic(),
    ):
        Segment.objects.create(timesheet=timesheet, owner=alice, started_at=at(3))


def test_a_segment_ends_after_it_starts_and_says_why(alice: Any, project: Project) -> None:
    timesheet = running(alice, project)
    with pytest.raises(IntegrityError), transaction.atomic():
        Segment.objects.filter(timesheet=timesheet).update(ended_at=at(0), end_reason="user")
    with pytest.raises(IntegrityError), transaction.atomic():
        Segment.objects.filter(timesheet=timesheet).update(ended_at=at(5))


@pytest.mark.postgresql
def test_the_accrual_updates_running_rows_in_place(make_user: Any, project: Project) -> None:
    """HOT updates: no new index entries for rows that change at every tick."""
    from django.db import connection

    from timesheets.services import timesheet_accrue_running

    for n in range(20):
        running(make_user(f"u{n}"), project)

    def hot_updates() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_stat_get_xact_tuples_hot_updated('timesheets_timesheet'::regclass)"
            )
            (count,) = cursor.fetchone()
        return int(count)

    before = hot_updates()
    assert timesheet_accrue_running(now=at(60)) == 20
    assert hot_updates() - before == 20


def segment(timesheet: Timesheet, start: float, end: float | None, *, exclusive: bool) -> None:
    Segment.objects.create(
        timesheet=timesheet,
        owner_id=timesheet.owner_id,
        exclusive=exclusive,
        started_at=at(start),
        ended_at=None if end is None else at(end),
        end_reason="" if end is None else "user",
    )


@pytest.mark.postgresql
class TestOverlapsAreImpossible:
    """PostgreSQL's exclusion constraints over time ranges refuse overlapping runs."""

    def overlapping(self, timesheet: Timesheet, start: float, end: float | None, **kw: Any) -> None:
        with pytest.raises(IntegrityError, match="never_overlap"), transaction.atomic():
            segment(timesheet, start, end, **kw)

    def test_within_a_timesheet(self, alice: Any, project: Project) -> None:
        timesheet = timesheet_create(owner=alice, project=project, description="", now=T0)
        segment(timesheet, 10, 20, exclusive=False)

        self.overlapping(timesheet, 19.999999, 30, exclusive=False)
        self.overlapping(timesheet, 0, 10.000001, exclusive=False)
        self.overlapping(timesheet, 12, 13, exclusive=False)
        self.overlapping(timesheet, 5, None, exclusive=False)
        segment(timesheet, 20, 30, exclusive=False)  # runs that touch do not overlap
        segment(timesheet, 0, 10, exclusive=False)
        segment(timesheet, 40, 40, exclusive=False)  # nor does an empty one

    def test_across_a_persons_exclusive_runs(self, alice: Any, project: Project) -> None:
        first = timesheet_create(owner=alice, project=project, description="", now=T0)
        second = timesheet_create(owner=alice, project=project, description="", now=T0)
        segment(first, 10, 20, exclusive=True)

        self.overlapping(second, 15, 25, exclusive=True)
        segment(second, 15, 25, exclusive=False)  # recorded under a higher limit: allowed
        segment(second, 30, None, exclusive=True)
        self.overlapping(first, 40, 50, exclusive=True)

    def test_other_peoples_runs_never_conflict(
        self, alice: Any, bob: Any, project: Project
    ) -> None:
        mine = timesheet_create(owner=alice, project=project, description="", now=T0)
        theirs = timesheet_create(owner=bob, project=project, description="", now=T0)
        segment(mine, 10, 20, exclusive=True)
        segment(theirs, 10, 20, exclusive=True)
