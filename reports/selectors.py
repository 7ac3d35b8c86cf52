"""Time per person, project, day or week: the sum of the runs, cut at local midnight.

Runs are the truth. Each is clipped to the range asked for and cut exactly at every local
midnight of the caller's time zone (``zoneinfo``), so a run across midnight or across a day
with a daylight-saving change is shared between its days to the microsecond, and the totals
are the sum of the clipped runs. A run in progress counts up to now on the time model's clock
(``timesheets.clock``), as far as its live time does.
"""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

import structlog
from django.db.models import Q, QuerySet

from timesheets import clock
from timesheets.models import Segment, Timesheet
from timesheets.policy import max_run_length, run_end

logger = structlog.get_logger("reports")

Group = Literal["user", "project", "day", "week"]
GROUPS: tuple[Group, ...] = ("user", "project", "day", "week")
MAX_REPORT_DAYS = 366  # days a report may span: a leap year
ROWS_PER_FETCH = 2000  # runs read from the database at a time


@dataclass(frozen=True)
class ReportQuery:
    start: date  # first local day, included
    end: date  # last local day, included
    zone: zoneinfo.ZoneInfo
    group_by: tuple[Group, ...] = ()
    owner_id: int | None = None  # None: everyone's
    project_id: int | None = None


@dataclass(frozen=True)
class ReportRow:
    key: tuple[str | date, ...]  # one value per group, in the order asked for
    total: timedelta


@dataclass(frozen=True)
class Report:
    query: ReportQuery
    rows: list[ReportRow]
    total: timedelta
    computed_at: datetime  # the instant runs in progress were counted up to


def local_midnight(day: date, zone: zoneinfo.ZoneInfo) -> datetime:
    """The instant a local day begins, in UTC.

    Where midnight falls in a daylight-saving gap, ``fold=0`` reads it with the offset from
    before the change, which is the instant the gap begins: the day still begins there.
    """
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def local_days(
    start: datetime, end: datetime, zone: zoneinfo.ZoneInfo
) -> Iterator[tuple[date, timedelta]]:
    """The local days from ``start`` to ``end`` and how much of that span lies in each."""
    day = start.astimezone(zone).date()
    while start < end:
        following = local_midnight(day + timedelta(days=1), zone)
        piece_end = min(end, following)
        if piece_end > start:
            yield day, piece_end - start
        start, day = max(start, following), day + timedelta(days=1)


def report_bounds(query: ReportQuery) -> tuple[datetime, datetime]:
    """The instants the report covers: from the first day's midnight to the one after the last."""
    return (
        local_midnight(query.start, query.zone),
        local_midnight(query.end + timedelta(days=1), query.zone),
    )


def _key(
    groups: Sequence[Group], *, username: str, project: str, day: date
) -> tuple[str | date, ...]:
    values: dict[Group, str | date] = {
        "user": username,
        "project": project,
        "day": day,
        "week": day - timedelta(days=day.weekday()),  # ISO weeks begin on Monday
    }
    return tuple(values[group] for group in groups)


def runs_in(
    *, since: datetime, until: datetime, timesheets: QuerySet[Timesheet] | None = None
) -> QuerySet[Segment]:
    """The runs that overlap ``[since, until)``, the finished ones and those in progress."""
    runs = Segment.objects.filter(started_at__lt=until).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gt=since)
    )
    if timesheets is not None:
        runs = runs.filter(timesheet__in=timesheets.values("pk"))
    return runs


def clipped_pieces(
    runs: Iterable[tuple[str, str, datetime, datetime | None, datetime | None, datetime | None]],
    *,
    since: datetime,
    until: datetime,
    zone: zoneinfo.ZoneInfo,
    now: datetime,
) -> Iterator[tuple[str, str, date, timedelta]]:
    """Each run's time per local day within ``[since, until)``: (username, project, day, time).

    A run in progress ends where its live time does: now, or the maximum run length.
    """
    max_run = max_run_length()
    for username, project, started_at, ended_at, accrued_until, running_since in runs:
        finish = ended_at
        if finish is None:
            if accrued_until is None or running_since is None:
                continue  # stopped meanwhile: its run will have its end
            finish = run_end(
                running_since=running_since, accrued_until=accrued_until, now=now, max_run=max_run
            )
        start, end = max(started_at, since), min(finish, until)
        for day, length in local_days(start, end, zone):
            yield username, project, day, length


def report_compute(query: ReportQuery, *, now: datetime | None = None) -> Report:
    """Totals per group over the query's local days; rows in the order of their keys."""
    since, until = report_bounds(query)
    at = clock.read(now)
    runs = runs_in(since=since, until=until)
    if query.owner_id is not None:
        runs = runs.filter(owner_id=query.owner_id)
    if query.project_id is not None:
        runs = runs.filter(timesheet__project_id=query.project_id)
    values = runs.values_list(
        "owner__username",
        "timesheet__project__code",
        "started_at",
        "ended_at",
        "timesheet__accrued_until",
        "timesheet__running_since",
    ).iterator(chunk_size=ROWS_PER_FETCH)
    totals: dict[tuple[str | date, ...], timedelta] = defaultdict(timedelta)
    pieces = 0
    for username, project, day, length in clipped_pieces(
        values, since=since, until=until, zone=query.zone, now=at
    ):
        totals[_key(query.group_by, username=username, project=project, day=day)] += length
        pieces += 1
    rows = [ReportRow(key=key, total=totals[key]) for key in sorted(totals)]
    total = sum((row.total for row in rows), timedelta(0))
    logger.info(
        "report_computed",
        days=(query.end - query.start).days + 1,
        groups=",".join(query.group_by),
        pieces=pieces,
        rows=len(rows),
        total_s=total.total_seconds(),
    )
    return Report(query=query, rows=rows, total=total, computed_at=at)


def time_within(
    timesheets: QuerySet[Timesheet],
    *,
    since: datetime | None,
    until: datetime | None,
    now: datetime | None = None,
) -> timedelta:
    """The time the timesheets' runs spent within ``[since, until)`` (either end open)."""
    at = clock.read(now)
    max_run = max_run_length()
    lo = since or datetime.min.replace(tzinfo=UTC)
    hi = until or datetime.max.replace(tzinfo=UTC)
    values = (
        runs_in(since=lo, until=hi, timesheets=timesheets)
        .values_list(
            "started_at", "ended_at", "timesheet__accrued_until", "timesheet__running_since"
        )
        .iterator(chunk_size=ROWS_PER_FETCH)
    )
    total = timedelta(0)
    for started_at, ended_at, accrued_until, running_since in values:
        end = ended_at
        if end is None:
            if accrued_until is None or running_since is None:
                continue
            end = run_end(
                running_since=running_since, accrued_until=accrued_until, now=at, max_run=max_run
            )
        total += max(timedelta(0), min(end, hi) - max(started_at, lo))
    return total
