"""My time's totals: runs cut at the person's local midnights, and how running ones grow."""

from __future__ import annotations

import zoneinfo
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User

from pages.summary import Live, summarize, timesheet_live
from timesheets.models import Project, Timesheet
from timesheets.services import segment_add, timesheet_create, timesheet_start

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settings_limits")]

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
# Wednesday 7 January 2026, 10:00 in Paris (UTC+1).
NOW = datetime(2026, 1, 7, 10, 0, tzinfo=PARIS)


def paris(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=PARIS)


def entry(owner: User, project: Project, start: datetime, end: datetime) -> Timesheet:
    timesheet = timesheet_create(owner=owner, project=project, description="work", now=start)
    segment_add(timesheet_id=timesheet.pk, started_at=start, ended_at=end, actor=owner, now=NOW)
    return timesheet


def test_a_run_across_midnight_counts_on_both_days(alice: User, project: Project) -> None:
    entry(alice, project, paris(6, 23), paris(7, 1))

    summary = summarize(owner_id=alice.pk, zone=PARIS, now=NOW)

    assert summary.today == Live(3600)
    by_day = {day.day.day: day for day in summary.days}
    assert by_day[6].total == Live(3600)
    # Listed on the day it started, with the part of it that falls on that day.
    assert [item.total for item in by_day[6].entries] == [Live(3600)]
    assert 7 not in by_day


def test_the_week_starts_on_monday_and_the_list_keeps_seven_days(
    alice: User, project: Project
) -> None:
    entry(alice, project, paris(4, 9), paris(4, 10))  # Sunday: last week
    entry(alice, project, paris(5, 9), paris(5, 11))  # Monday
    entry(alice, project, paris(7, 8), paris(7, 9))  # today
    # Wednesday a week ago: eight days ago, not listed.
    entry(alice, project, NOW - timedelta(days=7, hours=2), NOW - timedelta(days=7, hours=1))

    summary = summarize(owner_id=alice.pk, zone=PARIS, now=NOW)

    assert summary.week == Live(3 * 3600)
    assert summary.today == Live(3600)
    assert [day.day.day for day in summary.days] == [7, 5, 4]


def test_another_person_s_runs_are_not_counted(alice: User, bob: User, project: Project) -> None:
    entry(bob, project, paris(7, 8), paris(7, 9))

    summary = summarize(owner_id=alice.pk, zone=PARIS, now=NOW)

    assert summary.today == Live(0)
    assert summary.days == []


def test_a_running_timer_grows_until_midnight_or_its_maximum_length(
    alice: User, project: Project, settings_limits: Any
) -> None:
    settings_limits.TIMESHEETS_MAX_RUNNING_HOURS = 4
    timesheet = timesheet_create(owner=alice, project=project, description="now", now=paris(7, 9))
    timesheet_start(timesheet_id=timesheet.pk, now=paris(7, 9))

    summary = summarize(owner_id=alice.pk, zone=PARIS, now=NOW)

    # An hour so far; it stops counting at 13:00, four hours after it started.
    assert summary.today == Live(3600, rate=1, ceiling=4 * 3600)
    ((running, live),) = summary.running
    assert running.pk == timesheet.pk
    assert live == Live(3600, rate=1, ceiling=4 * 3600)

    # Without a maximum length, today's total still stops growing at midnight.
    settings_limits.TIMESHEETS_MAX_RUNNING_HOURS = 0
    summary = summarize(owner_id=alice.pk, zone=PARIS, now=NOW)
    assert summary.today == Live(3600, rate=1, ceiling=15 * 3600)
    assert summary.running[0][1] == Live(3600, rate=1)


def test_a_run_past_its_maximum_length_stands_still(
    alice: User, project: Project, settings_limits: Any
) -> None:
    settings_limits.TIMESHEETS_MAX_RUNNING_HOURS = 0.5
    timesheet = timesheet_create(owner=alice, project=project, description="now", now=paris(7, 9))
    timesheet_start(timesheet_id=timesheet.pk, now=paris(7, 9))

    summary = summarize(owner_id=alice.pk, zone=PARIS, now=NOW)

    assert summary.today == Live(1800)
    fresh = Timesheet.objects.select_related("project").get(pk=timesheet.pk)
    assert timesheet_live(fresh, now=NOW) == Live(1800, rate=0, ceiling=1800)


def test_live_markup_carries_what_the_script_needs() -> None:
    assert Live(61.5, rate=1, ceiling=120).__html__() == (
        '<span class="live" data-seconds="61.500000" data-rate="1" '
        'data-ceiling="120.000000">0:01:01</span>'
    )
    assert str(Live(3600)) == Live(3600).__html__()
    assert Live(3600).text == "1:00:00"


def test_a_day_s_entries_come_latest_first_with_their_runs_in_order(
    alice: User, project: Project
) -> None:
    early = entry(alice, project, paris(7, 6), paris(7, 7))
    late = entry(alice, project, paris(7, 8), paris(7, 9))
    segment_add(
        timesheet_id=early.pk,
        started_at=paris(7, 5),
        ended_at=paris(7, 5, 30),
        actor=alice,
        now=NOW,
    )

    (today,) = summarize(owner_id=alice.pk, zone=PARIS, now=NOW).days

    assert [item.timesheet.pk for item in today.entries] == [late.pk, early.pk]
    assert [run.started_at for run in today.entries[1].runs] == [paris(7, 5), paris(7, 6)]
    assert today.entries[1].total == Live(5400)
