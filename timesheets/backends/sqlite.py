"""The time model's writes on SQLite, with the ORM, on this host's clock.

A write transaction on SQLite holds the whole database (the project opens them ``IMMEDIATE``),
so what a transaction reads stays true until it commits: the rules are applied in Python
between reads and writes. The accrual is one set-based UPDATE per batch whose arithmetic
``timesheets.expressions`` compiles to SQLite's own functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Expression, F, Max, Q
from django.utils import timezone

from timesheets.backends import Batch, RunState
from timesheets.expressions import Earliest, Elapsed, Plus, Shift, duration, instant
from timesheets.models import Segment, Timesheet
from timesheets.policy import run_end, run_reached_limit

RUNNING = Timesheet.Status.RUNNING
STOPPED = Timesheet.Status.STOPPED


def _state(timesheet: Timesheet, *, read_at: datetime) -> RunState:
    return RunState(
        status=timesheet.status,
        imputed=timesheet.imputed,
        accrued_until=timesheet.accrued_until,
        running_since=timesheet.running_since,
        slot=timesheet.slot,
        auto_stopped=timesheet.auto_stopped,
        updated_at=timesheet.updated_at,
        read_at=read_at,
    )


def _stop_running(
    timesheet: Timesheet, *, reason: str, now: datetime, max_run: timedelta | None
) -> datetime:
    """Stop a running timesheet of this transaction; return where its run ended."""
    assert timesheet.accrued_until is not None
    assert timesheet.running_since is not None
    end = run_end(
        running_since=timesheet.running_since,
        accrued_until=timesheet.accrued_until,
        now=now,
        max_run=max_run,
    )
    if run_reached_limit(running_since=timesheet.running_since, end=end, max_run=max_run):
        reason = Segment.EndReason.AUTO
        timesheet.auto_stopped = True
    Segment.objects.filter(timesheet_id=timesheet.pk, ended_at__isnull=True).update(
        ended_at=end, end_reason=reason
    )
    Timesheet.objects.filter(pk=timesheet.pk).update(
        imputed=Plus(F("imputed"), duration(end - timesheet.accrued_until)),
        status=STOPPED,
        accrued_until=None,
        running_since=None,
        slot=None,
        auto_stopped=timesheet.auto_stopped,
        updated_at=now,
    )
    return end


class SQLiteBackend:
    def start(
        self,
        *,
        timesheet_id: int,
        owner_id: int,
        replace: list[int],
        slot: int | None,
        exclusive: bool,
        now: datetime | None,
        max_run: timedelta | None,
    ) -> RunState:
        now = now or timezone.now()
        ends = [
            _stop_running(other, reason=Segment.EndReason.REPLACED, now=now, max_run=max_run)
            for other in Timesheet.objects.filter(pk__in=replace, status=RUNNING)
        ]
        # Never before the end of this timesheet's last run, nor of the runs just replaced,
        # nor, when the person's runs must not overlap, of any run of theirs: the host's clock
        # may step back.
        earlier = Q(timesheet_id=timesheet_id)
        if exclusive:
            earlier |= Q(owner_id=owner_id)
        last_end = Segment.objects.filter(earlier).aggregate(last=Max("ended_at"))["last"]
        begin = max([now, *ends, *([last_end] if last_end is not None else [])])
        Timesheet.objects.filter(pk=timesheet_id, status=STOPPED).update(
            status=RUNNING, accrued_until=begin, running_since=begin, slot=slot, updated_at=now
        )
        Segment.objects.create(
            timesheet_id=timesheet_id, owner_id=owner_id, exclusive=exclusive, started_at=begin
        )
        return _state(Timesheet.objects.get(pk=timesheet_id), read_at=now)

    def stop(
        self, *, timesheet_id: int, reason: str, now: datetime | None, max_run: timedelta | None
    ) -> RunState:
        now = now or timezone.now()
        timesheet = Timesheet.objects.get(pk=timesheet_id)
        if timesheet.status == RUNNING:
            _stop_running(timesheet, reason=reason, now=now, max_run=max_run)
            timesheet.refresh_from_db()
        return _state(timesheet, read_at=now)

    def accrue_batch(
        self, *, after_id: int, size: int, now: datetime | None, max_run: timedelta | None
    ) -> Batch:
        in_batch = Timesheet.objects.filter(status=RUNNING, pk__gt=after_id)
        first_ids = in_batch.order_by("pk").values("pk")[:size]
        last_id = Timesheet.objects.filter(pk__in=first_ids).aggregate(last=Max("pk"))["last"]
        if last_id is None:
            return Batch(moved=0, last_id=None)
        target: Expression = instant(now or timezone.now())
        if max_run is not None:
            target = Earliest(target, Shift(F("running_since"), duration(max_run)))
        moved = in_batch.filter(pk__lte=last_id, accrued_until__lt=target).update(
            imputed=Plus(F("imputed"), Elapsed(target, F("accrued_until"))),
            accrued_until=target,
        )
        return Batch(moved=moved, last_id=last_id)

    @contextmanager
    def job_transaction(
        self, *, lock_timeout: float, statement_timeout: float, durable: bool = True
    ) -> Iterator[None]:
        # SQLite has no statement timeout, and what a job's statements wait for is the
        # database's write lock, taken when the transaction begins: they wait for it as long as
        # a statement may last at most, instead of the connection's own busy timeout, which is
        # meant for requests.
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {round(statement_timeout * 1000)}")
            try:
                with transaction.atomic():
                    yield
            finally:
                busy_timeout = settings.DATABASES[connection.alias]["OPTIONS"].get("timeout", 5)
                cursor.execute(f"PRAGMA busy_timeout = {round(busy_timeout * 1000)}")


BACKEND = SQLiteBackend()
