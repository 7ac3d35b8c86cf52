"""Report totals: cut at local midnight, across daylight-saving days, clipped to the range."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reports.selectors import ReportQuery, report_compute, time_within
from tests.reports.conftest import AddRun
from timesheets.models import Project, Segment, Timesheet
from timesheets.services import timesheet_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settings_limits")]

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
NOW = datetime(2027, 1, 1, tzinfo=UTC)  # after every run of these tests


def local(zone: zoneinfo.ZoneInfo, *parts: int) -> datetime:
    return datetime(*parts).replace(tzinfo=zone)  # type: ignore[arg-type]


def by_day(report: Any) -> dict[date, timedelta]:
    return {row.key[0]: row.total for row in report.rows}


def test_a_run_across_midnight_is_cut_there(alice: User, add_run: AddRun) -> None:
    add_run(alice, local(PARIS, 2026, 3, 10, 22, 30), local(PARIS, 2026, 3, 11, 1, 15))

    report = report_compute(
        ReportQuery(date(2026, 3, 9), date(2026, 3, 12), PARIS, group_by=("day",)), now=NOW
    )

    assert by_day(report) == {
        date(2026, 3, 10): timedelta(hours=1, minutes=30),
        date(2026, 3, 11): timedelta(hours=1, minutes=15),
    }
    assert report.total == timedelta(hours=2, minutes=45)


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        (PARIS, date(2026, 3, 29), 23),  # clocks go from 02:00 to 03:00
        (PARIS, date(2026, 10, 25), 25),  # from 03:00 back to 02:00
        (NEW_YORK, date(2026, 3, 8), 23),
        (NEW_YORK, date(2026, 11, 1), 25),
    ],
)
def test_a_daylight_saving_day_has_its_own_length(
    alice: User, add_run: AddRun, zone: zoneinfo.ZoneInfo, day: date, hours: int
) -> None:
    before, after = day - timedelta(days=1), day + timedelta(days=1)
    add_run(
        alice,
        datetime.combine(before, datetime.min.time(), zone) + timedelta(hours=12),
        datetime.combine(after, datetime.min.time(), zone) + timedelta(hours=12),
    )

    report = report_compute(ReportQuery(before, after, zone, group_by=("day",)), now=NOW)

    assert by_day(report) == {
        before: timedelta(hours=12),
        day: timedelta(hours=hours),
        after: timedelta(hours=12),
    }


def test_the_same_run_falls_on_other_days_in_another_zone(alice: User, add_run: AddRun) -> None:
    # 23:00 to 01:00 in Paris is 17:00 to 19:00 in New York: one day there, two here.
    add_run(alice, local(PARIS, 2026, 6, 1, 23), local(PARIS, 2026, 6, 2, 1))

    paris = report_compute(
        ReportQuery(date(2026, 6, 1), date(2026, 6, 2), PARIS, group_by=("day",)), now=NOW
    )
    new_york = report_compute(
        ReportQuery(date(2026, 6, 1), date(2026, 6, 2), NEW_YORK, group_by=("day",)), now=NOW
    )

    assert by_day(paris) == {
        date(2026, 6, 1): timedelta(hours=1),
        date(2026, 6, 2): timedelta(1 / 24),
    }
    assert by_day(new_york) == {date(2026, 6, 1): timedelta(hours=2)}


def test_runs_are_clipped_to_the_range(alice: User, add_run: AddRun) -> None:
    add_run(alice, local(PARIS, 2026, 5, 3, 20), local(PARIS, 2026, 5, 4, 0, 0, 0, 250))
    add_run(alice, local(PARIS, 2026, 5, 6, 23), local(PARIS, 2026, 5, 7, 3))
    add_run(alice, local(PARIS, 2026, 5, 1, 8), local(PARIS, 2026, 5, 1, 9))  # outside

    report = report_compute(ReportQuery(date(2026, 5, 4), date(2026, 5, 6), PARIS), now=NOW)

    assert report.rows[0].key == ()
    assert report.total == timedelta(hours=1, microseconds=250)


def test_a_running_run_counts_up_to_now_and_no_further_than_its_limit(
    alice: User, project: Project
) -> None:
    started = datetime(2026, 4, 1, 8, tzinfo=UTC)
    timesheet_create(owner=alice, project=project, description="", start=True, now=started)
    query = ReportQuery(date(2026, 4, 1), date(2026, 4, 2), zoneinfo.ZoneInfo("UTC"))

    soon = report_compute(query, now=started + timedelta(minutes=90))
    much_later = report_compute(query, now=started + timedelta(hours=30))

    assert soon.total == timedelta(minutes=90)
    assert soon.computed_at == started + timedelta(minutes=90)
    assert much_later.total == timedelta(hours=12)  # the maximum run length


def test_grouping_by_user_project_and_week(
    alice: User, bob: User, project: Project, add_run: AddRun
) -> None:
    other = Project.objects.create(code="beta", designation="Beta")
    utc = zoneinfo.ZoneInfo("UTC")
    # 2026-01-04 is a Sunday, 2026-01-05 a Monday: two ISO weeks.
    add_run(alice, local(utc, 2026, 1, 4, 10), local(utc, 2026, 1, 4, 11))
    add_run(alice, local(utc, 2026, 1, 5, 10), local(utc, 2026, 1, 5, 12))
    add_run(alice, local(utc, 2026, 1, 6, 10), local(utc, 2026, 1, 6, 13), on=other)
    add_run(bob, local(utc, 2026, 1, 7, 10), local(utc, 2026, 1, 7, 14))
    query = ReportQuery(date(2026, 1, 1), date(2026, 1, 10), utc, group_by=("week", "user"))

    weekly = report_compute(query, now=NOW)
    by_project = report_compute(
        ReportQuery(date(2026, 1, 1), date(2026, 1, 10), utc, group_by=("project",)), now=NOW
    )
    bobs = report_compute(
        ReportQuery(date(2026, 1, 1), date(2026, 1, 10), utc, owner_id=bob.pk), now=NOW
    )
    betas = report_compute(
        ReportQuery(date(2026, 1, 1), date(2026, 1, 10), utc, project_id=other.pk), now=NOW
    )

    assert [(row.key, row.total) for row in weekly.rows] == [
        ((date(2025, 12, 29), "alice"), timedelta(hours=1)),
        ((date(2026, 1, 5), "alice"), timedelta(hours=5)),
        ((date(2026, 1, 5), "bob"), timedelta(hours=4)),
    ]
    assert [(row.key, row.total) for row in by_project.rows] == [
        (("acme",), timedelta(hours=7)),
        (("beta",), timedelta(hours=3)),
    ]
    assert bobs.total == timedelta(hours=4)
    assert betas.total == timedelta(hours=3)


def test_time_within_sums_the_clipped_runs_of_some_timesheets(
    alice: User, bob: User, add_run: AddRun
) -> None:
    add_run(alice, datetime(2026, 2, 1, 22, tzinfo=UTC), datetime(2026, 2, 2, 2, tzinfo=UTC))
    add_run(bob, datetime(2026, 2, 1, 22, tzinfo=UTC), datetime(2026, 2, 2, 2, tzinfo=UTC))
    alices = Timesheet.objects.filter(owner=alice)

    clipped = time_within(alices, since=datetime(2026, 2, 2, tzinfo=UTC), until=None, now=NOW)
    everything = time_within(Timesheet.objects.all(), since=None, until=None, now=NOW)

    assert clipped == timedelta(hours=2)
    assert everything == timedelta(hours=8)


# --- Against a naive reference ----------------------------------------------------------------

DST_DAYS = [date(2026, 3, 8), date(2026, 3, 29), date(2026, 10, 25), date(2026, 11, 1)]


def reference(
    runs: list[tuple[datetime, datetime]], start: date, end: date, zone: zoneinfo.ZoneInfo
) -> dict[date, timedelta]:
    """Day by day, each day's bounds from the zone alone, each run's overlap with it."""
    totals: dict[date, timedelta] = {}
    day = start
    while day <= end:
        following = day + timedelta(days=1)
        # In UTC: Python subtracts two times of one zone as wall-clock times, ignoring DST.
        lo = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
        hi = datetime(following.year, following.month, following.day, tzinfo=zone).astimezone(UTC)
        overlap = sum((max(timedelta(0), min(b, hi) - max(a, lo)) for a, b in runs), timedelta(0))
        if overlap:
            totals[day] = overlap
        day = following
    return totals


@settings(
    max_examples=40,
    deadline=None,
    database=None,  # nothing written to the working tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(  # a run over a whole 23-hour day
    zone=PARIS,
    around=date(2026, 3, 29),
    first=0,
    days=1,
    runs=[(-3_600_000_000, 86_400 * 10**6 * 2)],
)
@given(
    zone=st.sampled_from([PARIS, NEW_YORK]),
    around=st.sampled_from(DST_DAYS),
    first=st.integers(min_value=-2, max_value=1),
    days=st.integers(min_value=1, max_value=4),
    runs=st.lists(
        st.tuples(
            st.integers(min_value=-3 * 86_400 * 10**6, max_value=3 * 86_400 * 10**6),
            st.integers(min_value=1, max_value=2 * 86_400 * 10**6),
        ),
        max_size=6,
    ),
)
def test_totals_equal_the_clipped_runs_to_the_microsecond(
    alice: User,
    project: Project,
    zone: zoneinfo.ZoneInfo,
    around: date,
    first: int,
    days: int,
    runs: list[tuple[int, int]],
) -> None:
    Segment.objects.all().delete()
    origin = datetime(around.year, around.month, around.day, tzinfo=zone).astimezone(UTC)
    instants = [
        (origin + timedelta(microseconds=at), origin + timedelta(microseconds=at + length))
        for at, length in runs
    ]
    # One entry per run: runs of one entry never overlap (PostgreSQL's constraints see to it),
    # and overlapping runs of one person are what the report must add up too.
    for a, b in instants:
        entry = Timesheet.objects.create(owner=alice, project=project)
        Segment.objects.create(
            timesheet=entry, owner=alice, started_at=a, ended_at=b, end_reason="manual"
        )
    start = around + timedelta(days=first)
    end = start + timedelta(days=days - 1)

    report = report_compute(ReportQuery(start, end, zone, group_by=("day",)), now=NOW)

    expected = reference(instants, start, end, zone)
    assert by_day(report) == expected
    assert report.total == sum(expected.values(), timedelta(0))
