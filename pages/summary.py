"""What My time shows: a person's runs cut at their local midnights, at one clock reading.

Segments are the truth: a day's total is the time of the runs that fall within it, the open
run of a running timesheet counting up to now (never past the maximum run length). Each total
carries what the page's script needs to keep it ticking (``Live``).
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db.models import Q
from django.utils.html import format_html
from django.utils.safestring import SafeString

from reports.selectors import local_midnight
from timesheets.admin import format_duration
from timesheets.models import Segment, Timesheet
from timesheets.policy import max_run_length, run_end
from timesheets.selectors import timesheet_accumulated

RUNNING = Timesheet.Status.RUNNING
DAYS_SHOWN = 7  # local days, today included


@dataclass(frozen=True)
class Live:
    """A duration at the page's clock reading, and how it grows while the page is open."""

    seconds: float
    rate: int = 0  # seconds per second: how many of the runs it sums are running
    ceiling: float | None = None  # where it stops growing; None: it does not stop

    @property
    def text(self) -> str:
        return format_duration(self.seconds)

    def __html__(self) -> SafeString:
        return format_html(
            '<span class="live" data-seconds="{}" data-rate="{}" data-ceiling="{}">{}</span>',
            f"{self.seconds:.6f}",
            self.rate,
            "" if self.ceiling is None else f"{self.ceiling:.6f}",
            self.text,
        )

    def __str__(self) -> str:
        # Templates turn values into text before escaping them: the markup is the text.
        return self.__html__()


@dataclass(frozen=True)
class Run:
    segment: Segment
    started_at: datetime
    ended_at: datetime  # the open run's: up to where it counts now
    growing: bool  # open, and still below the maximum run length
    stops_at: datetime | None  # an open run's end at the maximum run length

    @property
    def open(self) -> bool:
        return self.segment.ended_at is None

    @property
    def length(self) -> Live:
        return within([self], start=self.started_at, end=None, now=self.ended_at)


@dataclass
class DayEntry:
    timesheet: Timesheet
    runs: list[Run] = field(default_factory=list)
    total: Live = Live(0)


@dataclass
class Day:
    day: date
    entries: list[DayEntry]
    total: Live


@dataclass(frozen=True)
class Summary:
    now: datetime
    running: list[tuple[Timesheet, Live]]
    today: Live
    week: Live
    days: list[Day]


def within(runs: list[Run], *, start: datetime, end: datetime | None, now: datetime) -> Live:
    """The time of ``runs`` between ``start`` and ``end`` (None: no end), growing from ``now``."""
    seconds, rate, room = 0.0, 0, 0.0
    for run in runs:
        lo = max(run.started_at, start)
        hi = run.ended_at if end is None else min(run.ended_at, end)
        if hi > lo:
            seconds += (hi - lo).total_seconds()
        if run.growing and (end is None or end > now):
            limits = [x for x in (run.stops_at, end) if x is not None]
            rate += 1
            room = room + (min(limits) - now).total_seconds() if limits else float("inf")
    if rate == 0:
        return Live(seconds)
    return Live(seconds, rate, None if room == float("inf") else seconds + room)


def timesheet_live(timesheet: Timesheet, *, now: datetime) -> Live:
    """The timesheet's accumulated time at ``now``, and where it stops growing."""
    seconds = timesheet_accumulated(timesheet=timesheet, now=now).total_seconds()
    if (
        timesheet.status != Timesheet.Status.RUNNING
        or timesheet.running_since is None
        or timesheet.accrued_until is None
    ):
        return Live(seconds)
    limit = max_run_length()
    if limit is None:
        return Live(seconds, 1)
    # Past the maximum run length the time stops growing; a limit lowered below what the run
    # has accrued keeps the time counted so far.
    ceiling = (
        timesheet.imputed
        + max(timedelta(0), timesheet.running_since + limit - timesheet.accrued_until)
    ).total_seconds()
    return Live(seconds, 1 if seconds < ceiling else 0, ceiling)


def runs_of(segments: list[Segment], *, now: datetime) -> list[Run]:
    """The segments as runs; an open one counts up to now, or to the maximum run length."""
    limit = max_run_length()
    runs = []
    for segment in segments:
        timesheet = segment.timesheet
        if segment.ended_at is not None:
            runs.append(Run(segment, segment.started_at, segment.ended_at, False, None))
            continue
        if timesheet.accrued_until is None or timesheet.running_since is None:
            # Not running any more since the segment was read: it counts as it was.
            runs.append(Run(segment, segment.started_at, max(now, segment.started_at), False, None))
            continue
        end = run_end(
            running_since=timesheet.running_since,
            accrued_until=timesheet.accrued_until,
            now=now,
            max_run=limit,
        )
        stops_at = None if limit is None else timesheet.running_since + limit
        growing = stops_at is None or end < stops_at
        runs.append(Run(segment, segment.started_at, end, growing, stops_at))
    return runs


def summarize(*, owner_id: int, zone: zoneinfo.ZoneInfo, now: datetime) -> Summary:
    today = now.astimezone(zone).date()
    first_day = today - timedelta(days=DAYS_SHOWN - 1)
    monday = today - timedelta(days=today.weekday())
    since = local_midnight(min(first_day, monday), zone)
    segments = list(
        Segment.objects.filter(owner_id=owner_id)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=since))
        .select_related("timesheet__project")
        .order_by("started_at", "pk")
    )
    runs = runs_of(segments, now=now)
    running = [
        (timesheet, timesheet_live(timesheet, now=now))
        for timesheet in Timesheet.objects.filter(
            owner_id=owner_id, status=Timesheet.Status.RUNNING
        )
        .select_related("project")
        .order_by("-running_since", "-pk")
    ]
    # Entries without any run yet appear on the day they were created.
    unstarted: dict[date, list[Timesheet]] = {}
    for timesheet in (
        Timesheet.objects.filter(
            owner_id=owner_id,
            created_at__gte=local_midnight(first_day, zone),
            segments__isnull=True,
        )
        .select_related("project")
        .order_by("created_at")
    ):
        unstarted.setdefault(timesheet.created_at.astimezone(zone).date(), []).append(timesheet)
    tomorrow = local_midnight(today + timedelta(days=1), zone)
    days = []
    for offset in range(DAYS_SHOWN):
        day = today - timedelta(days=offset)
        start = local_midnight(day, zone)
        end = local_midnight(day + timedelta(days=1), zone)
        entries: dict[int, DayEntry] = {}
        for run in runs:
            if start <= run.started_at < end:
                entry = entries.setdefault(
                    run.segment.timesheet_id, DayEntry(timesheet=run.segment.timesheet)
                )
                entry.runs.append(run)
        for timesheet in unstarted.get(day, []):
            entries[timesheet.pk] = DayEntry(timesheet=timesheet)
        for entry in entries.values():
            entry.total = within(entry.runs, start=start, end=end, now=now)
        if entries:
            ordered = sorted(
                entries.values(),
                key=lambda e: e.runs[-1].started_at if e.runs else e.timesheet.created_at,
                reverse=True,
            )
            days.append(Day(day, ordered, within(runs, start=start, end=end, now=now)))
    return Summary(
        now=now,
        running=running,
        today=within(runs, start=local_midnight(today, zone), end=tomorrow, now=now),
        week=within(runs, start=local_midnight(monday, zone), end=tomorrow, now=now),
        days=days,
    )
