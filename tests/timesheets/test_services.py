from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.db import connection

from events.models import Event
from tests.conftest import T0, at
from tests.invariants import assert_invariants, segments_total
from tests.sessions import session_of
from timesheets import services
from timesheets.backends import backend
from timesheets.exceptions import ProjectCodeTaken, ProjectInactive
from timesheets.models import ApiToken, Profile, Project, Segment, Timesheet
from timesheets.services import (
    api_token_amark_used,
    api_token_create,
    api_token_digest,
    api_token_fill,
    project_create,
    timesheet_aaccrue_running,
    timesheet_accrue_running,
    timesheet_create,
    timesheet_describe,
    timesheet_start,
    timesheet_stop,
    timesheet_stop_forgotten,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settings_limits")]

RUNNING = Timesheet.Status.RUNNING
STOPPED = Timesheet.Status.STOPPED


def new(owner: User, project: Project, *, start_at: float | None = None) -> Timesheet:
    timesheet = timesheet_create(owner=owner, project=project, description="work", now=T0)
    if start_at is not None:
        timesheet = timesheet_start(timesheet_id=timesheet.pk, now=at(start_at))
    return timesheet


def fresh(timesheet: Timesheet) -> Timesheet:
    return Timesheet.objects.get(pk=timesheet.pk)


class TestStart:
    def test_sets_the_watermark_and_opens_a_segment(self, alice: Any, project: Project) -> None:
        timesheet = new(alice, project, start_at=10)

        assert timesheet.status == RUNNING
        assert timesheet.accrued_until == at(10)
        assert timesheet.running_since == at(10)
        assert timesheet.imputed == timedelta(0)
        assert timesheet.slot == 1
        segment = Segment.objects.get(timesheet=timesheet)
        assert (segment.started_at, segment.ended_at, segment.end_reason) == (at(10), None, "")

    def test_starting_a_running_timesheet_changes_nothing(
        self, alice: Any, project: Project
    ) -> None:
        timesheet = new(alice, project, start_at=10)
        timesheet_accrue_running(now=at(15))

        again = timesheet_start(timesheet_id=timesheet.pk, now=at(20))

        assert (again.accrued_until, again.imputed) == (at(15), timedelta(seconds=5))
        assert again.running_since == at(10)
        assert Segment.objects.filter(timesheet=timesheet).count() == 1

    def test_create_can_start_at_once(self, alice: Any, project: Project) -> None:
        timesheet = timesheet_create(
            owner=alice, project=project, description="x", now=at(3), start=True
        )
        assert fresh(timesheet).status == RUNNING
        assert fresh(timesheet).running_since == at(3)

    def test_an_archived_project_takes_no_time(self, alice: Any, project: Project) -> None:
        timesheet = new(alice, project)
        Project.objects.filter(pk=project.pk).update(is_active=False)
        timesheet.project.refresh_from_db()

        with pytest.raises(ProjectInactive, match="archived"):
            timesheet_start(timesheet_id=timesheet.pk, now=at(1))
        with pytest.raises(ProjectInactive):
            timesheet_create(owner=alice, project=timesheet.project, description="", now=at(1))

        assert fresh(timesheet).status == STOPPED
        assert not Segment.objects.exists()
        assert Timesheet.objects.count() == 1

    def test_the_limit_of_one_replaces_the_running_timesheet(
        self, alice: Any, bob: Any, project: Project
    ) -> None:
        first = new(alice, project, start_at=0)
        bobs = new(bob, project, start_at=0)
        second = new(alice, project, start_at=90)

        first = fresh(first)
        assert first.status == STOPPED
        assert first.imputed == timedelta(seconds=90)
        assert Segment.objects.get(timesheet=first).end_reason == Segment.EndReason.REPLACED
        assert fresh(second).status == RUNNING
        assert fresh(bobs).status == RUNNING, "another person's timer is not touched"

    def test_a_higher_limit_replaces_the_longest_running(
        self, alice: Any, project: Project, settings: Any
    ) -> None:
        settings.TIMESHEETS_MAX_RUNNING_PER_USER = 2
        oldest = new(alice, project, start_at=0)
        middle = new(alice, project, start_at=10)
        newest = new(alice, project, start_at=20)

        assert fresh(oldest).status == STOPPED
        assert {fresh(middle).slot, fresh(newest).slot} == {1, 2}
        assert_invariants(now=at(30), max_running_per_user=2)

    def test_a_new_run_takes_the_lowest_free_slot(
        self, alice: Any, project: Project, settings: Any
    ) -> None:
        settings.TIMESHEETS_MAX_RUNNING_PER_USER = 3
        first = new(alice, project, start_at=0)
        second = new(alice, project, start_at=10)
        timesheet_stop(timesheet_id=first.pk, now=at(20))

        third = new(alice, project, start_at=30)

        assert (second.slot, third.slot) == (2, 1)
        assert [fresh(t).slot for t in (first, second, third)] == [None, 2, 1]
        assert_invariants(now=at(30), max_running_per_user=3)

    def test_no_limit_lets_everything_run(
        self, alice: Any, project: Project, settings: Any
    ) -> None:
        settings.TIMESHEETS_MAX_RUNNING_PER_USER = 0
        timesheets = [new(alice, project, start_at=n) for n in range(4)]

        assert all(fresh(t).status == RUNNING and fresh(t).slot is None for t in timesheets)

    def test_lowering_the_limit_applies_at_the_next_start(
        self, alice: Any, project: Project, settings: Any
    ) -> None:
        settings.TIMESHEETS_MAX_RUNNING_PER_USER = 0
        for n in range(3):
            new(alice, project, start_at=n)
        settings.TIMESHEETS_MAX_RUNNING_PER_USER = 1

        last = new(alice, project, start_at=10)

        assert list(Timesheet.objects.filter(status=RUNNING)) == [last]
        assert_invariants(now=at(11))


def test_describe_changes_only_the_description(alice: Any, project: Project) -> None:
    timesheet = new(alice, project, start_at=0)

    described = timesheet_describe(timesheet=timesheet, description="Review", now=at(9))

    stored = fresh(timesheet)
    assert (stored.description, stored.updated_at) == ("Review", at(9))
    assert (stored.status, stored.accrued_until, stored.imputed) == (RUNNING, at(0), timedelta(0))
    assert described.description == "Review"


def test_describe_records_the_change_by_the_owner_unless_said_otherwise(
    alice: Any, staff: Any, project: Project
) -> None:
    timesheet = new(alice, project, start_at=0)

    timesheet_describe(timesheet=timesheet, description="Review", now=at(9))
    timesheet_describe(timesheet=timesheet, description="Plan", actor_id=staff.pk, now=at(12))

    updates = Event.objects.filter(type=Event.Type.TIMESHEET_UPDATED).order_by("pk")
    assert [
        (
            event.actor_id,
            event.owner_id,
            event.timesheet_id,
            event.occurred_at,
            event.data["timesheet"]["description"],
            event.data["timesheet"]["updated_at"],
        )
        for event in updates
    ] == [
        (alice.pk, alice.pk, timesheet.pk, at(9), "Review", "2026-01-05T09:00:09.000000Z"),
        (staff.pk, alice.pk, timesheet.pk, at(12), "Plan", "2026-01-05T09:00:12.000000Z"),
    ]


class TestStop:
    def test_adds_the_time_since_the_watermark(self, alice: Any, project: Project) -> None:
        timesheet = new(alice, project, start_at=0)
        timesheet_accrue_running(now=at(5))

        stopped = timesheet_stop(timesheet_id=timesheet.pk, now=at(7.25))

        assert stopped.status == STOPPED
        assert stopped.imputed == timedelta(seconds=7.25)
        assert (stopped.accrued_until, stopped.running_since, stopped.slot) == (None, None, None)
        segment = Segment.objects.get(timesheet=timesheet)
        assert (segment.ended_at, segment.end_reason) == (at(7.25), Segment.EndReason.USER)

    def test_stopping_a_stopped_timesheet_is_a_no_op(self, alice: Any, project: Project) -> None:
        timesheet = new(alice, project, start_at=0)
        timesheet_stop(timesheet_id=timesheet.pk, now=at(4))

        again = timesheet_stop(timesheet_id=timesheet.pk, now=at(9))

        assert again.imputed == timedelta(seconds=4)
        assert Segment.objects.get(timesheet=timesheet).ended_at == at(4)

    def test_a_clock_behind_the_watermark_takes_nothing_back(
        self, alice: Any, project: Project
    ) -> None:
        timesheet = new(alice, project, start_at=0)
        timesheet_accrue_running(now=at(10))  # another process, with a faster clock

        stopped = timesheet_stop(timesheet_id=timesheet.pk, now=at(9))

        assert stopped.imputed == timedelta(seconds=10)
        assert Segment.objects.get(timesheet=timesheet).ended_at == at(10)

    def test_restarting_adds_a_segment(self, alice: Any, project: Project) -> None:
        timesheet = new(alice, project, start_at=0)
        timesheet_stop(timesheet_id=timesheet.pk, now=at(3))
        timesheet_start(timesheet_id=timesheet.pk, now=at(100))
        timesheet_stop(timesheet_id=timesheet.pk, now=at(104.5))

        assert fresh(timesheet).imputed == timedelta(seconds=7.5)
        assert segments_total(timesheet.pk, now=at(200)) == timedelta(seconds=7.5)


@pytest.fixture(params=["sync", "native"])
def accrue(request: pytest.FixtureRequest) -> Callable[..., int]:
    """The accrual, through the sync path or the one driven from the event loop."""
    if request.param == "sync":
        return timesheet_accrue_running

    def natively(**arguments: Any) -> int:
        return async_to_sync(timesheet_aaccrue_running)(**arguments)

    return natively


class TestAccrue:
    def test_moves_every_running_watermark_in_batches(
        self,
        make_user: Any,
        project: Project,
        accrue: Callable[..., int],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        running = [new(make_user(f"u{n}"), project, start_at=n) for n in range(5)]
        idle = new(running[0].owner, project)  # never started
        batches: list[tuple[int, int, int]] = []
        accrue_range = services._accrue_range

        def recorded(**arguments: Any) -> int:
            moved = accrue_range(**arguments)
            batches.append((arguments["after_id"], arguments["last_id"], moved))
            return moved

        monkeypatch.setattr(services, "_accrue_range", recorded)

        advanced = accrue(now=at(10), batch_size=2)

        assert advanced == 5
        ids = [t.pk for t in running]
        assert batches == [(0, ids[1], 2), (ids[1], ids[3], 2), (ids[3], ids[4], 1)], (
            "two per batch, by id range, the last one what remains"
        )
        assert [fresh(t).imputed for t in running] == [timedelta(seconds=10 - n) for n in range(5)]
        assert all(fresh(t).accrued_until == at(10) for t in running)
        assert fresh(idle).imputed == timedelta(0)
        assert_invariants(now=at(10))

    def test_a_late_or_repeated_run_counts_nothing_twice(
        self, alice: Any, project: Project, accrue: Callable[..., int]
    ) -> None:
        timesheet = new(alice, project, start_at=0)

        assert accrue(now=at(5)) == 1
        assert accrue(now=at(5)) == 0, "same instant: nothing to add"
        assert accrue(now=at(4)) == 0, "a clock behind the watermark: never negative"
        assert fresh(timesheet).accrued_until == at(5), "the watermark never moves back"
        assert accrue(now=at(6.000001)) == 1

        assert fresh(timesheet).imputed == timedelta(seconds=6, microseconds=1)

    def test_interleaved_processes_count_each_second_once(
        self, alice: Any, bob: Any, project: Project, accrue: Callable[..., int]
    ) -> None:
        timesheets = [new(alice, project, start_at=0), new(bob, project, start_at=0.5)]
        # Three processes whose clocks disagree by a few milliseconds, ticking out of order.
        for now in [1.002, 1.0, 1.001, 2.0, 2.003, 1.999, 3.5, 3.499]:
            accrue(now=at(now))

        assert [fresh(t).imputed for t in timesheets] == [
            timedelta(seconds=3.5),
            timedelta(seconds=3.0),
        ]

    def test_both_paths_give_identical_results(
        self, alice: Any, bob: Any, project: Project
    ) -> None:
        timesheets = [new(alice, project, start_at=0), new(bob, project, start_at=1.5)]
        timesheet_accrue_running(now=at(2))
        snapshot_sync = [(t.imputed, t.accrued_until) for t in map(fresh, timesheets)]
        advanced_sync = timesheet_accrue_running(now=at(7.123456))
        after_sync = [(t.imputed, t.accrued_until) for t in map(fresh, timesheets)]

        # Roll the rows back to the snapshot and run the native version over the same data.
        for timesheet, (imputed, watermark) in zip(timesheets, snapshot_sync, strict=True):
            Timesheet.objects.filter(pk=timesheet.pk).update(
                imputed=imputed, accrued_until=watermark
            )
        advanced_native = async_to_sync(timesheet_aaccrue_running)(now=at(7.123456))
        after_native = [(t.imputed, t.accrued_until) for t in map(fresh, timesheets)]

        assert advanced_native == advanced_sync == 2
        assert after_native == after_sync


class TestClockOrder:
    """Whatever the clocks say, a run never starts before the end of the one it follows."""

    def test_a_restart_with_a_clock_behind_starts_where_the_last_run_ended(
        self, alice: Any, project: Project
    ) -> None:
        timesheet = new(alice, project, start_at=0)
        timesheet_stop(timesheet_id=timesheet.pk, now=at(100))

        restarted = timesheet_start(timesheet_id=timesheet.pk, now=at(40))  # the clock stepped back

        assert restarted.running_since == restarted.accrued_until == at(100)
        timesheet_stop(timesheet_id=timesheet.pk, now=at(130))
        assert fresh(timesheet).imputed == timedelta(seconds=130)
        assert_invariants(now=at(130))

    def test_a_replacing_start_behind_the_replaced_watermark_follows_it(
        self, alice: Any, project: Project
    ) -> None:
        first = new(alice, project, start_at=0)
        timesheet_accrue_running(now=at(60))  # a process whose clock is ahead

        second = new(alice, project, start_at=30)

        replaced = Segment.objects.get(timesheet=first)
        assert (replaced.ended_at, replaced.end_reason) == (at(60), Segment.EndReason.REPLACED)
        assert fresh(first).imputed == timedelta(seconds=60), "nothing taken back"
        assert second.running_since == at(60)
        assert_invariants(now=at(60))

    def test_a_persons_next_run_never_starts_before_their_last_one_ended(
        self, alice: Any, project: Project
    ) -> None:
        first = new(alice, project, start_at=0)
        timesheet_stop(timesheet_id=first.pk, now=at(50))

        other = new(alice, project, start_at=20)

        assert other.running_since == at(50)
        assert Segment.objects.get(timesheet=other).exclusive
        assert_invariants(now=at(60))

    def test_under_a_higher_limit_a_persons_runs_may_overlap(
        self, alice: Any, project: Project, settings: Any
    ) -> None:
        settings.TIMESHEETS_MAX_RUNNING_PER_USER = 2
        first = new(alice, project, start_at=0)
        timesheet_stop(timesheet_id=first.pk, now=at(50))

        other = new(alice, project, start_at=20)

        assert other.running_since == at(20)
        assert not Segment.objects.get(timesheet=other).exclusive
        assert_invariants(now=at(60), max_running_per_user=2)


class TestMaximumRunLength:
    def test_accrual_stops_at_the_limit(
        self, alice: Any, project: Project, settings: Any, accrue: Callable[..., int]
    ) -> None:
        settings.TIMESHEETS_MAX_RUNNING_HOURS = 1
        timesheet = new(alice, project, start_at=0)

        accrue(now=at(3000))
        accrue(now=at(3700))
        assert accrue(now=at(3800)) == 0

        assert fresh(timesheet).accrued_until == at(3600)
        assert fresh(timesheet).imputed == timedelta(hours=1)

    def test_a_lowered_limit_never_takes_accrued_time_back(
        self, alice: Any, project: Project, settings: Any, accrue: Callable[..., int]
    ) -> None:
        settings.TIMESHEETS_MAX_RUNNING_HOURS = 12
        timesheet = new(alice, project, start_at=0)
        accrue(now=at(7200))
        settings.TIMESHEETS_MAX_RUNNING_HOURS = 1

        assert accrue(now=at(7300)) == 0
        assert (fresh(timesheet).imputed, fresh(timesheet).accrued_until) == (
            timedelta(hours=2),
            at(7200),
        )
        assert timesheet_stop_forgotten(now=at(7300)) == 1

        stopped = fresh(timesheet)
        assert (stopped.status, stopped.auto_stopped) == (STOPPED, True), "flagged for review"
        assert stopped.imputed == timedelta(hours=2), "time already counted stays counted"
        segment = Segment.objects.get(timesheet=timesheet)
        assert (segment.ended_at, segment.end_reason) == (at(7200), Segment.EndReason.AUTO)
        assert_invariants(now=at(7300))

    def test_a_stop_under_a_lowered_limit_ends_at_the_watermark(
        self, alice: Any, project: Project, settings: Any
    ) -> None:
        settings.TIMESHEETS_MAX_RUNNING_HOURS = 12
        timesheet = new(alice, project, start_at=0)
        timesheet_accrue_running(now=at(7200))
        settings.TIMESHEETS_MAX_RUNNING_HOURS = 1

        stopped = timesheet_stop(timesheet_id=timesheet.pk, now=at(9000))

        assert stopped.imputed == timedelta(hours=2)
        assert stopped.auto_stopped
        assert Segment.objects.get(timesheet=timesheet).ended_at == at(7200)

    def test_a_replacing_start_under_a_lowered_limit_takes_nothing_back(
        self, alice: Any, project: Project, settings: Any
    ) -> None:
        settings.TIMESHEETS_MAX_RUNNING_HOURS = 12
        first = new(alice, project, start_at=0)
        timesheet_accrue_running(now=at(7200))
        settings.TIMESHEETS_MAX_RUNNING_HOURS = 1

        second = new(alice, project, start_at=9000)

        assert (fresh(first).imputed, fresh(first).auto_stopped) == (timedelta(hours=2), True)
        assert Segment.objects.get(timesheet=first).end_reason == Segment.EndReason.AUTO
        assert second.running_since == at(9000)
        assert_invariants(now=at(9000))

    def test_forgotten_runs_stop_at_exactly_the_limit(
        self, alice: Any, bob: Any, project: Project, settings: Any
    ) -> None:
        settings.TIMESHEETS_MAX_RUNNING_HOURS = 1
        forgotten = new(alice, project, start_at=0)
        recent = new(bob, project, start_at=1800)
        timesheet_accrue_running(now=at(3500))

        assert timesheet_stop_forgotten(now=at(3700)) == 1

        forgotten = fresh(forgotten)
        assert forgotten.status == STOPPED
        assert forgotten.auto_stopped
        assert forgotten.imputed == timedelta(hours=1)
        segment = Segment.objects.get(timesheet=forgotten)
        assert (segment.ended_at, segment.end_reason) == (at(3600), Segment.EndReason.AUTO)
        assert fresh(recent).status == RUNNING
        assert_invariants(now=at(3700))

    def test_forgotten_runs_are_stopped_in_batches(
        self, make_user: Any, project: Project, settings: Any, monkeypatch: Any
    ) -> None:
        settings.TIMESHEETS_MAX_RUNNING_HOURS = 1
        monkeypatch.setattr(services, "FORGOTTEN_BATCH", 2)
        timesheets = [new(make_user(f"u{n}"), project, start_at=n) for n in range(5)]

        assert timesheet_stop_forgotten(now=at(7200)) == 5

        assert all(fresh(t).imputed == timedelta(hours=1) for t in timesheets)
        assert_invariants(now=at(7200))

    def test_the_review_flag_stays_through_later_runs_until_reviewed(
        self, alice: Any, project: Project, settings: Any
    ) -> None:
        settings.TIMESHEETS_MAX_RUNNING_HOURS = 1
        timesheet = new(alice, project, start_at=0)
        assert timesheet_stop_forgotten(now=at(3700)) == 1

        timesheet_start(timesheet_id=timesheet.pk, now=at(4000))
        stopped = timesheet_stop(timesheet_id=timesheet.pk, now=at(4100))

        assert stopped.auto_stopped
        assert fresh(timesheet).auto_stopped
        assert fresh(timesheet).imputed == timedelta(seconds=3700)
        last = Segment.objects.filter(timesheet=timesheet).latest("pk")
        assert last.end_reason == Segment.EndReason.USER

    def test_a_stop_past_the_limit_ends_the_run_at_the_limit(
        self, alice: Any, project: Project, settings: Any
    ) -> None:
        settings.TIMESHEETS_MAX_RUNNING_HOURS = 0.5
        timesheet = new(alice, project, start_at=0)

        stopped = timesheet_stop(timesheet_id=timesheet.pk, now=at(5000))

        assert stopped.imputed == timedelta(minutes=30)
        assert stopped.auto_stopped
        assert Segment.objects.get(timesheet=timesheet).end_reason == Segment.EndReason.AUTO

    def test_zero_disables_the_limit(
        self, alice: Any, project: Project, settings: Any, accrue: Callable[..., int]
    ) -> None:
        settings.TIMESHEETS_MAX_RUNNING_HOURS = 0
        timesheet = new(alice, project, start_at=0)

        assert timesheet_stop_forgotten(now=at(10**6)) == 0
        accrue(now=at(10**6))
        assert fresh(timesheet).imputed == timedelta(seconds=10**6)


class TestProjects:
    def test_codes_are_unique(self) -> None:
        project_create(code="ops", designation="Operations", now=T0)

        with pytest.raises(ProjectCodeTaken, match="'ops' already exists"):
            project_create(code="ops", designation="Again", now=T0)
        assert Project.objects.count() == 1


class TestApiTokens:
    def test_only_the_digest_is_stored(self, alice: Any) -> None:
        issued = api_token_create(user=alice, name="laptop", expires_at=None, now=T0)

        stored = ApiToken.objects.get()
        assert issued.secret.startswith("tsk_")
        assert len(issued.secret) > 40
        assert stored.digest == api_token_digest(issued.secret)
        assert issued.secret not in (stored.digest, stored.prefix)
        assert issued.secret.startswith(stored.prefix)

    def test_the_secret_is_256_random_bits_and_its_prefix_the_first_8_characters(
        self, alice: Any
    ) -> None:
        issued = api_token_create(user=alice, name="laptop", expires_at=None, now=T0)
        other = ApiToken(user=alice, name="admin's")
        secret = api_token_fill(token=other, now=at(5))

        for token, shown in ((issued.token, issued.secret), (other, secret)):
            body = shown.removeprefix("tsk_")
            assert len(body) == 43, "32 bytes, URL-safe base64 without padding"
            assert token.prefix == shown[:12]
            assert token.digest == api_token_digest(shown)
        assert other.created_at == at(5)
        assert issued.secret != secret

    def test_an_issued_token_cannot_be_changed(self, alice: Any) -> None:
        issued = api_token_create(user=alice, name="laptop", expires_at=None, now=T0)

        with pytest.raises(dataclasses.FrozenInstanceError):
            issued.secret = "tsk_chosen"  # type: ignore[misc]

    @pytest.mark.parametrize(("later", "written"), [(59.999999, False), (60, True), (61, True)])
    def test_last_use_is_written_at_most_once_a_minute(
        self, alice: Any, later: float, written: bool
    ) -> None:
        token = api_token_create(user=alice, name="", expires_at=None, now=T0).token

        async_to_sync(api_token_amark_used)(token=token, now=at(0))
        async_to_sync(api_token_amark_used)(token=token, now=at(30))
        assert ApiToken.objects.get().last_used_at == at(0)
        async_to_sync(api_token_amark_used)(token=token, now=at(later))
        assert ApiToken.objects.get().last_used_at == (at(later) if written else at(0))
        assert token.last_used_at == ApiToken.objects.get().last_used_at


class TestTokenRevocation:
    def test_a_token_expires_now_and_an_expired_one_keeps_its_expiry(
        self, alice: User, bob: User
    ) -> None:
        live = services.api_token_create(user=alice, name="live", expires_at=None, now=T0)
        old = services.api_token_create(user=alice, name="old", expires_at=at(10), now=T0)

        services.api_token_revoke(user=alice, token_id=live.token.pk, now=at(60))
        services.api_token_revoke(user=alice, token_id=old.token.pk, now=at(60))

        assert ApiToken.objects.get(pk=live.token.pk).expires_at == at(60)
        assert ApiToken.objects.get(pk=old.token.pk).expires_at == at(10)
        with pytest.raises(ApiToken.DoesNotExist):
            services.api_token_revoke(user=bob, token_id=live.token.pk, now=at(120))
        assert ApiToken.objects.get(pk=live.token.pk).expires_at == at(60)


class TestProfile:
    def test_the_time_zone_is_set_and_changed(self, alice: User) -> None:
        services.profile_set_time_zone(user=alice, time_zone="Asia/Tokyo")
        services.profile_set_time_zone(user=alice, time_zone="Europe/Paris")

        (profile,) = Profile.objects.filter(user=alice)
        assert profile.time_zone == "Europe/Paris"


def job_session() -> dict[str, str]:
    """How long the statements of the current transaction may wait, as the database says."""
    connection.ensure_connection()
    return session_of(connection.connection)


class TestJobTimeouts:
    """Every statement of a job gives up after 2 s waiting for a lock and 5 s in all (on
    SQLite, 5 s waiting for the database), so a blocked job never holds up a graceful stop."""

    def test_each_accrual_statement_runs_under_them_and_a_batch_need_not_wait_for_the_disk(
        self, make_user: Any, project: Project, on_postgresql: bool
    ) -> None:
        for n in range(3):
            new(make_user(f"u{n}"), project, start_at=n)
        seen: list[tuple[str, dict[str, str]]] = []

        def observed(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            verb = sql.split(None, 1)[0].upper()
            if verb in {"SELECT", "WITH", "UPDATE"}:  # what reads or writes the data
                seen.append((verb, session_of(context["connection"].connection)))
            return execute(sql, params, many, context)

        with connection.execute_wrapper(observed):
            assert timesheet_accrue_running(now=at(5), batch_size=2) == 3

        if on_postgresql:
            job = {"lock_timeout": "2s", "statement_timeout": "5s", "synchronous_commit": "on"}
            batch = {**job, "lock_timeout": "1ms", "synchronous_commit": "off"}
            assert seen == [("WITH", job), ("UPDATE", batch), ("UPDATE", batch)], (
                "the batches' ends, then two batches, each waiting a millisecond for a row at most"
            )
        else:
            job = {"busy_timeout_ms": "5000"}
            assert seen == [("WITH", job), ("UPDATE", job), ("UPDATE", job)]

    def test_the_forgotten_run_job_runs_under_them_and_its_commits_are_durable(
        self,
        alice: Any,
        project: Project,
        settings: Any,
        monkeypatch: pytest.MonkeyPatch,
        on_postgresql: bool,
    ) -> None:
        settings.TIMESHEETS_MAX_RUNNING_HOURS = 1
        new(alice, project, start_at=0)
        seen: list[dict[str, str]] = []
        write_runs = backend().write_runs

        def observed(**arguments: Any) -> None:
            seen.append(job_session())
            write_runs(**arguments)

        monkeypatch.setattr(backend(), "write_runs", observed)

        assert timesheet_stop_forgotten(now=at(3700)) == 1

        job = (
            {"lock_timeout": "2s", "statement_timeout": "5s", "synchronous_commit": "on"}
            if on_postgresql
            else {"busy_timeout_ms": "5000"}
        )
        assert seen == [job]
