"""Every invariant of the time model, checked for every timesheet in one consistent snapshot.

Used by ``manage.py check_timesheets`` and by the tests. The rules, each exact to the
microsecond:

- ``imputed``: a timesheet's imputed time equals its closed runs' durations plus, while it runs,
  its open run up to the watermark;
- ``not_negative``: imputed time is never negative;
- ``open_run``: a running timesheet has exactly one open run, which started when the timesheet
  says; a stopped one has none;
- ``watermark``: a running timesheet's watermark lies between its run's start and now;
- ``run_order``: no run ends before it starts;
- ``future``: no instant lies in the future of the time model's clock;
- ``overlap``: no two runs of a timesheet overlap;
- ``person_overlap``: no two runs of a person recorded under a per-person limit of 1 overlap;
- ``running_per_person``: no one runs more timesheets than the per-person limit;
- ``owner``: a run belongs to its timesheet's owner.

Instants are compared with the database's clock read inside the snapshot (on PostgreSQL), so
that a check on any host agrees with the writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby
from operator import itemgetter
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from timesheets.models import Segment, Timesheet
from timesheets.policy import max_running_per_user

RULES = (
    "imputed",
    "not_negative",
    "open_run",
    "watermark",
    "run_order",
    "future",
    "overlap",
    "person_overlap",
    "running_per_person",
    "owner",
)
CHUNK = 5000  # rows fetched at a time: memory stays flat however many timesheets there are
RUNNING = Timesheet.Status.RUNNING

type SegmentRow = tuple[int, int, int, bool, datetime, datetime | None]


@dataclass(frozen=True)
class Violation:
    rule: str
    timesheet_id: int | None
    detail: str

    def __str__(self) -> str:
        where = f"timesheet {self.timesheet_id}" if self.timesheet_id is not None else "person"
        return f"{self.rule}: {where}: {self.detail}"


@dataclass
class Report:
    checked_at: datetime
    timesheets: int = 0
    running: int = 0
    segments: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    examples: list[Violation] = field(default_factory=list)
    max_examples: int = 20

    @property
    def ok(self) -> bool:
        return not self.counts

    @property
    def violations(self) -> int:
        return sum(self.counts.values())

    def add(self, rule: str, timesheet_id: int | None, detail: str) -> None:
        self.counts[rule] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(Violation(rule, timesheet_id, detail))

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked_at": self.checked_at.isoformat(),
            "timesheets": self.timesheets,
            "running": self.running,
            "segments": self.segments,
            "violations": {rule: self.counts[rule] for rule in RULES},
            "examples": [str(example) for example in self.examples],
        }


def check(
    *,
    now: datetime | None = None,
    max_running: int | None = None,
    max_examples: int = 20,
) -> Report:
    """Check every rule; ``now`` and ``max_running`` replace the clock and the setting."""
    limit = max_running_per_user() if max_running is None else max_running
    with _snapshot() as clock_now:
        report = Report(checked_at=now or clock_now, max_examples=max_examples)
        _check_timesheets(report)
        _check_people(report, limit=limit)
    return report


@contextmanager
def _snapshot() -> Iterator[datetime]:
    """A read-only transaction that sees one state of the database; yields its clock.

    Inside a transaction already open (a test's), the check reads within it.
    """
    if connection.in_atomic_block:
        yield _clock_now()
        return
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            # The snapshot is taken by the first query; a clock read after it is later than
            # every commit the snapshot contains.
            cursor.execute("SELECT count(*) FROM timesheets_timesheet")
            cursor.execute("SELECT clock_timestamp()")
            (clock_now,) = cursor.fetchone()
            yield clock_now
        return
    # SQLite in WAL mode: a deferred transaction reads one snapshot without holding up writers
    # (Django's own transactions here take the write lock at once).
    with connection.cursor() as cursor:
        cursor.execute("BEGIN DEFERRED")
        try:
            cursor.execute("SELECT count(*) FROM timesheets_timesheet")
            yield timezone.now()
        finally:
            cursor.execute("ROLLBACK")


def _clock_now() -> datetime:
    if connection.vendor != "postgresql":
        return timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        (clock_now,) = cursor.fetchone()
    assert isinstance(clock_now, datetime)
    return clock_now


def _check_timesheets(report: Report) -> None:
    timesheets = (
        Timesheet.objects.order_by("pk")
        .values_list("pk", "owner_id", "status", "imputed", "accrued_until", "running_since")
        .iterator(chunk_size=CHUNK)
    )
    segments = groupby(
        Segment.objects.order_by("timesheet_id", "started_at", "pk")
        .values_list("timesheet_id", "pk", "owner_id", "exclusive", "started_at", "ended_at")
        .iterator(chunk_size=CHUNK),
        key=itemgetter(0),
    )
    pending = next(segments, None)
    for pk, owner_id, status, imputed, accrued_until, running_since in timesheets:
        while pending is not None and pending[0] < pk:
            report.add("owner", pending[0], "runs without a timesheet")
            pending = next(segments, None)
        runs: list[SegmentRow] = []
        if pending is not None and pending[0] == pk:
            runs = list(pending[1])
            pending = next(segments, None)
        report.timesheets += 1
        report.segments += len(runs)
        report.running += status == RUNNING
        _check_one(
            report,
            pk=pk,
            owner_id=owner_id,
            running=status == RUNNING,
            imputed=imputed,
            accrued_until=accrued_until,
            running_since=running_since,
            runs=runs,
        )


def _check_one(
    report: Report,
    *,
    pk: int,
    owner_id: int,
    running: bool,
    imputed: timedelta,
    accrued_until: datetime | None,
    running_since: datetime | None,
    runs: list[SegmentRow],
) -> None:
    if imputed < timedelta(0):
        report.add("not_negative", pk, f"imputed {imputed}")
    closed, open_runs = _check_runs(report, pk=pk, owner_id=owner_id, runs=runs)
    expected = closed
    if running:
        if accrued_until is None or running_since is None:
            report.add("watermark", pk, "running without a watermark")
            return
        if not running_since <= accrued_until <= report.checked_at:
            report.add(
                "watermark",
                pk,
                f"watermark {accrued_until} outside {running_since} to {report.checked_at}",
            )
        if [started_at for _, started_at in open_runs] != [running_since]:
            report.add("open_run", pk, f"running since {running_since}; open runs {open_runs}")
        expected += accrued_until - running_since
    elif open_runs:
        report.add("open_run", pk, f"stopped with open runs {open_runs}")
    if imputed != expected:
        report.add("imputed", pk, f"imputed {imputed} but its runs add up to {expected}")


def _check_runs(
    report: Report, *, pk: int, owner_id: int, runs: list[SegmentRow]
) -> tuple[timedelta, list[tuple[int, datetime]]]:
    """Check one timesheet's runs; return their closed time and the open ones."""
    now = report.checked_at
    closed = timedelta(0)
    open_runs = []
    for _, segment_id, run_owner, _exclusive, started_at, ended_at in runs:
        if run_owner != owner_id:
            report.add("owner", pk, f"run {segment_id} belongs to user {run_owner}")
        if started_at > now or (ended_at is not None and ended_at > now):
            report.add("future", pk, f"run {segment_id} ({started_at} to {ended_at}) after {now}")
        if ended_at is None:
            open_runs.append((segment_id, started_at))
        elif ended_at < started_at:
            report.add("run_order", pk, f"run {segment_id} ends at {ended_at}, before {started_at}")
        else:
            closed += ended_at - started_at
    for overlap in _overlaps((run[1], run[4], run[5]) for run in runs):
        report.add("overlap", pk, str(overlap))
    return closed, open_runs


def _check_people(report: Report, *, limit: int) -> None:
    if limit:
        running = Counter(
            Timesheet.objects.filter(status=RUNNING).values_list("owner_id", flat=True)
        )
        for owner_id, count in running.items():
            if count > limit:
                report.add(
                    "running_per_person", None, f"user {owner_id} runs {count} (limit {limit})"
                )
    exclusive = (
        Segment.objects.filter(exclusive=True)
        .order_by("owner_id", "started_at", "pk")
        .values_list("owner_id", "pk", "timesheet_id", "started_at", "ended_at")
        .iterator(chunk_size=CHUNK)
    )
    for owner_id, runs in groupby(exclusive, key=itemgetter(0)):
        for overlap in _overlaps((run[1], run[3], run[4]) for run in runs):
            report.add("person_overlap", None, f"user {owner_id}: {overlap}")


@dataclass(frozen=True)
class _Overlap:
    segment_id: int
    started_at: datetime
    earlier_id: int
    earlier_end: datetime | None  # None: the earlier run is still open

    def __str__(self) -> str:
        return (
            f"run {self.segment_id} starts at {self.started_at}, before run {self.earlier_id} "
            f"ends ({self.earlier_end or 'open'})"
        )


def _overlaps(runs: Iterable[tuple[int, datetime, datetime | None]]) -> Iterator[_Overlap]:
    """Overlapping runs among ``(id, start, end)`` sorted by start; runs are half-open."""
    reach_id: int | None = None  # the earlier run that reaches furthest
    reach: datetime | None = None  # how far it reaches; None while it is open
    for segment_id, started_at, ended_at in runs:
        if reach_id is not None and (reach is None or reach > started_at):
            yield _Overlap(segment_id, started_at, reach_id, reach)
        if reach_id is None or (reach is not None and (ended_at is None or ended_at > reach)):
            reach_id, reach = segment_id, ended_at
