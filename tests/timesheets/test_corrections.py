"""Runs added, changed and deleted by hand keep the time model exact, and are recorded."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.conftest import T0, at
from tests.invariants import assert_invariants
from timesheets.exceptions import CorrectionRefused, SegmentOverlap
from timesheets.models import Correction, Project, Segment, Timesheet
from timesheets.services import (
    segment_add,
    segment_change,
    segment_delete,
    timesheet_accrue_running,
    timesheet_create,
    timesheet_delete,
    timesheet_review,
    timesheet_start,
    timesheet_stop,
    timesheet_stop_forgotten,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settings_limits")]

NOW = at(10_000)


def entry(owner: User, project: Project, description: str = "work") -> Timesheet:
    return timesheet_create(owner=owner, project=project, description=description, now=T0)


def ran(timesheet: Timesheet, start: float, end: float) -> Timesheet:
    timesheet_start(timesheet_id=timesheet.pk, now=at(start))
    return timesheet_stop(timesheet_id=timesheet.pk, now=at(end))


def fresh(timesheet: Timesheet) -> Timesheet:
    return Timesheet.objects.get(pk=timesheet.pk)


def add(timesheet: Timesheet, start: float, end: float, actor: User, **kw: Any) -> Segment:
    return segment_add(
        timesheet_id=timesheet.pk,
        started_at=at(start),
        ended_at=at(end),
        actor=actor,
        now=NOW,
        **kw,
    )


class TestAdd:
    def test_a_past_run_adds_its_length_and_is_recorded(
        self, alice: User, project: Project
    ) -> None:
        timesheet = ran(entry(alice, project), 1000, 1100)

        run = add(timesheet, 0, 60.5, alice)

        assert (run.started_at, run.ended_at, run.end_reason) == (at(0), at(60.5), "manual")
        assert fresh(timesheet).imputed == timedelta(seconds=160.5)
        (record,) = Correction.objects.all()
        assert (record.action, record.actor, record.timesheet, record.segment_id) == (
            Correction.Action.SEGMENT_ADDED,
            alice,
            timesheet,
            run.pk,
        )
        assert record.recorded_at == NOW
        assert record.before is None
        assert record.after == {
            "id": run.pk,
            "timesheet_id": timesheet.pk,
            "started_at": "2026-01-05T09:00:00.000000Z",
            "ended_at": "2026-01-05T09:01:00.500000Z",
            "end_reason": "manual",
        }
        assert_invariants(now=NOW)

    @pytest.mark.parametrize(
        ("start", "end", "message"),
        [
            (50, 50, "must end after it starts"),
            (50, 40, "must end after it starts"),
            (9990, 10_000.000001, "cannot lie in the future"),
        ],
    )
    def test_impossible_runs_are_refused_and_change_nothing(
        self, alice: User, project: Project, start: float, end: float, message: str
    ) -> None:
        timesheet = entry(alice, project)

        with pytest.raises(CorrectionRefused, match=message):
            add(timesheet, start, end, alice)

        assert not Segment.objects.exists()
        assert not Correction.objects.exists()
        assert fresh(timesheet).imputed == timedelta(0)

    def test_a_run_may_end_now(self, alice: User, project: Project) -> None:
        timesheet = entry(alice, project)

        run = add(timesheet, 9990, 10_000, alice)

        assert run.ended_at == NOW
        assert fresh(timesheet).imputed == timedelta(seconds=10)

    def test_a_time_without_a_time_zone_is_refused(self, alice: User, project: Project) -> None:
        with pytest.raises(CorrectionRefused, match="time zone"):
            segment_add(
                timesheet_id=entry(alice, project).pk,
                started_at=datetime(2026, 1, 5, 9),
                ended_at=at(60),
                actor=alice,
                now=NOW,
            )

    def test_a_time_zone_without_an_offset_is_refused(self, alice: User, project: Project) -> None:
        class Unknown(tzinfo):
            """A time zone that does not know its offset: its times are naive."""

            def utcoffset(self, dt: datetime | None) -> timedelta | None:
                return None

            def dst(self, dt: datetime | None) -> timedelta | None:
                return None

            def tzname(self, dt: datetime | None) -> str | None:
                return None

        with pytest.raises(CorrectionRefused, match="time zone"):
            segment_add(
                timesheet_id=entry(alice, project).pk,
                started_at=at(0),
                ended_at=datetime(2026, 1, 5, 9, 1, tzinfo=Unknown()),
                actor=alice,
                now=NOW,
            )
        assert not Segment.objects.exists()

    @pytest.mark.parametrize(("start", "end"), [(90, 110), (100, 200), (50, 101), (199, 300)])
    def test_a_run_overlapping_another_of_the_entry_is_refused_naming_it(
        self, alice: User, project: Project, start: float, end: float
    ) -> None:
        timesheet = ran(entry(alice, project, "Kick-off"), 100, 200)
        other = Segment.objects.get(timesheet=timesheet)

        with pytest.raises(SegmentOverlap) as refused:
            add(timesheet, start, end, alice)

        assert (refused.value.timesheet_id, refused.value.segment_id) == (timesheet.pk, other.pk)
        assert f"run {other.pk} of entry {timesheet.pk} ('Kick-off')" in refused.value.message
        assert "2026-01-05T09:01:40.000000Z to 2026-01-05T09:03:20.000000Z" in refused.value.message
        assert Segment.objects.count() == 1

    def test_runs_that_touch_do_not_overlap(self, alice: User, project: Project) -> None:
        timesheet = ran(entry(alice, project), 100, 200)

        add(timesheet, 50, 100, alice)
        add(timesheet, 200, 250, alice)

        assert fresh(timesheet).imputed == timedelta(seconds=200)
        assert_invariants(now=NOW)

    def test_a_persons_runs_never_overlap_under_a_limit_of_one(
        self, alice: User, project: Project, settings: Any
    ) -> None:
        other = ran(entry(alice, project, "other"), 100, 200)
        timesheet = entry(alice, project)

        with pytest.raises(SegmentOverlap) as refused:
            add(timesheet, 150, 250, alice)
        assert refused.value.timesheet_id == other.pk

        settings.TIMESHEETS_MAX_RUNNING_PER_USER = 2
        add(timesheet, 150, 250, alice)
        assert_invariants(now=NOW, max_running_per_user=2)

    def test_nothing_may_overlap_a_running_entry(self, alice: User, project: Project) -> None:
        timesheet = entry(alice, project)
        timesheet_start(timesheet_id=timesheet.pk, now=at(500))

        with pytest.raises(SegmentOverlap, match="to now \\(it is running\\)"):
            add(timesheet, 600, 700, alice)
        add(timesheet, 100, 500, alice)

        timesheet_accrue_running(now=at(800))
        assert fresh(timesheet).imputed == timedelta(seconds=700)
        assert_invariants(now=at(800))

    def test_only_the_owner_may_when_the_owner_is_given(
        self, alice: User, bob: User, project: Project
    ) -> None:
        timesheet = entry(alice, project)

        with pytest.raises(Timesheet.DoesNotExist):
            add(timesheet, 0, 10, bob, owner_id=bob.pk)
        add(timesheet, 0, 10, alice, owner_id=alice.pk)


class TestChange:
    def test_moving_a_finished_run_changes_the_entry_and_is_recorded(
        self, alice: User, bob: User, project: Project
    ) -> None:
        timesheet = ran(entry(alice, project), 100, 200)
        run = Segment.objects.get(timesheet=timesheet)

        changed = segment_change(segment_id=run.pk, ended_at=at(260), actor=bob, now=NOW)

        assert (changed.started_at, changed.ended_at) == (at(100), at(260))
        assert fresh(timesheet).imputed == timedelta(seconds=160)
        record = Correction.objects.get()
        assert (record.action, record.actor) == (Correction.Action.SEGMENT_CHANGED, bob)
        assert record.before is not None
        assert record.after is not None
        assert record.before["ended_at"] == "2026-01-05T09:03:20.000000Z"
        assert record.after["ended_at"] == "2026-01-05T09:04:20.000000Z"
        assert_invariants(now=NOW)

    def test_a_change_into_another_run_is_refused(self, alice: User, project: Project) -> None:
        timesheet = ran(entry(alice, project), 100, 200)
        ran(timesheet, 300, 400)
        first = Segment.objects.get(timesheet=timesheet, started_at=at(100))

        with pytest.raises(SegmentOverlap):
            segment_change(segment_id=first.pk, ended_at=at(301), actor=alice, now=NOW)
        with pytest.raises(CorrectionRefused, match="must end after it starts"):
            segment_change(segment_id=first.pk, started_at=at(200), actor=alice, now=NOW)

        assert fresh(timesheet).imputed == timedelta(seconds=200)
        assert not Correction.objects.exists()

    def test_moving_the_start_of_a_running_entry_moves_its_run(
        self, alice: User, project: Project
    ) -> None:
        timesheet = entry(alice, project)
        timesheet_start(timesheet_id=timesheet.pk, now=at(1000))
        timesheet_accrue_running(now=at(1100))
        run = Segment.objects.get(timesheet=timesheet)

        segment_change(segment_id=run.pk, started_at=at(900), actor=alice, now=at(1200))
        moved = fresh(timesheet)
        assert (moved.running_since, moved.accrued_until) == (at(900), at(1100))
        assert moved.imputed == timedelta(seconds=200)
        assert_invariants(now=at(1200))

        segment_change(segment_id=run.pk, started_at=at(1150), actor=alice, now=at(1200))
        moved = fresh(timesheet)
        assert (moved.running_since, moved.accrued_until) == (at(1150), at(1150))
        assert moved.imputed == timedelta(0)
        stopped = timesheet_stop(timesheet_id=timesheet.pk, now=at(1300))
        assert stopped.imputed == timedelta(seconds=150)
        assert_invariants(now=at(1300))

    def test_a_running_run_cannot_be_ended_nor_started_in_the_future(
        self, alice: User, project: Project
    ) -> None:
        timesheet = entry(alice, project)
        timesheet_start(timesheet_id=timesheet.pk, now=at(1000))
        run = Segment.objects.get(timesheet=timesheet)

        with pytest.raises(CorrectionRefused, match="stop the timer"):
            segment_change(segment_id=run.pk, ended_at=at(1050), actor=alice, now=at(1100))
        with pytest.raises(CorrectionRefused, match="future"):
            segment_change(segment_id=run.pk, started_at=at(1101), actor=alice, now=at(1100))


class TestDelete:
    def test_deleting_a_run_takes_its_time_away_and_is_recorded(
        self, alice: User, project: Project
    ) -> None:
        timesheet = ran(entry(alice, project), 100, 200)
        ran(timesheet, 300, 450)
        first = Segment.objects.get(timesheet=timesheet, started_at=at(100))

        segment_delete(segment_id=first.pk, actor=alice, now=NOW)

        assert fresh(timesheet).imputed == timedelta(seconds=150)
        record = Correction.objects.get()
        assert (record.action, record.segment_id, record.after) == (
            Correction.Action.SEGMENT_DELETED,
            first.pk,
            None,
        )
        assert record.before is not None
        assert record.before["started_at"] == "2026-01-05T09:01:40.000000Z"
        assert_invariants(now=NOW)

    def test_the_running_run_cannot_be_deleted(self, alice: User, project: Project) -> None:
        timesheet = entry(alice, project)
        timesheet_start(timesheet_id=timesheet.pk, now=at(100))

        with pytest.raises(CorrectionRefused, match="stop the timer first"):
            segment_delete(segment_id=Segment.objects.get().pk, actor=alice, now=at(200))

    def test_deleting_an_entry_stops_it_and_keeps_the_record(
        self, alice: User, project: Project
    ) -> None:
        timesheet = ran(entry(alice, project, "gone"), 100, 200)
        timesheet_start(timesheet_id=timesheet.pk, now=at(300))

        timesheet_delete(timesheet_id=timesheet.pk, actor=alice, now=at(350))

        assert not Timesheet.objects.exists()
        assert not Segment.objects.exists()
        record = Correction.objects.get()
        assert (record.action, record.timesheet) == (Correction.Action.TIMESHEET_DELETED, None)
        assert record.before is not None
        assert record.before["id"] == timesheet.pk
        assert record.before["description"] == "gone"
        assert record.before["imputed_seconds"] == 150
        assert [run["ended_at"] for run in record.before["segments"]] == [
            "2026-01-05T09:03:20.000000Z",
            "2026-01-05T09:05:50.000000Z",
        ]


def test_reviewing_clears_the_flag_once(alice: User, project: Project, settings: Any) -> None:
    settings.TIMESHEETS_MAX_RUNNING_HOURS = 1
    timesheet = entry(alice, project)
    timesheet_start(timesheet_id=timesheet.pk, now=at(0))
    timesheet_stop_forgotten(now=at(7200))
    assert fresh(timesheet).auto_stopped

    reviewed = timesheet_review(timesheet_id=timesheet.pk, actor=alice, now=at(7300))
    timesheet_review(timesheet_id=timesheet.pk, actor=alice, now=at(7400))

    assert not reviewed.auto_stopped
    assert not fresh(timesheet).auto_stopped
    assert fresh(timesheet).imputed == timedelta(hours=1)
    record = Correction.objects.get()
    assert (record.action, record.before, record.after) == (
        Correction.Action.REVIEWED,
        {"auto_stopped": True},
        {"auto_stopped": False},
    )


def test_a_persons_time_zone_is_their_own_else_the_services(
    alice: User, bob: User, settings: Any
) -> None:
    from timesheets.models import Profile
    from timesheets.selectors import user_time_zone

    settings.TIME_ZONE = "Europe/Paris"
    Profile.objects.create(user=alice, time_zone="America/Montreal")

    assert str(user_time_zone(alice)) == "America/Montreal"
    assert str(user_time_zone(bob)) == "Europe/Paris"
    Profile.objects.filter(user=alice).update(time_zone="Nowhere/Gone")
    assert str(user_time_zone(alice)) == "Europe/Paris"


def test_an_entrys_history_lists_its_corrections_latest_first(
    alice: User, project: Project
) -> None:
    from timesheets.selectors import correction_list

    timesheet = entry(alice, project)
    run = add(timesheet, 0, 10, alice)
    segment_change(segment_id=run.pk, ended_at=at(20), actor=alice, now=at(10_001))

    assert [c.action for c in correction_list(timesheet_id=timesheet.pk)] == [
        Correction.Action.SEGMENT_CHANGED,
        Correction.Action.SEGMENT_ADDED,
    ]
