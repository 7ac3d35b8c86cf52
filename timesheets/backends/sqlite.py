"""The time model's writes on SQLite, with the ORM, on this host's clock.

A write transaction on SQLite holds the whole database (the project opens them ``IMMEDIATE``),
so what the service read in its transaction stays true until it commits, and the writes can be
plain statements. The accrual is one set-based UPDATE per batch whose arithmetic
``timesheets.expressions`` compiles to SQLite's own functions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import Expression, F
from django.utils import timezone

from events.services import NewEvent, event_record
from timesheets.backends import Ending, Opening
from timesheets.exceptions import DatabaseBusy
from timesheets.expressions import Earliest, Elapsed, Plus, Shift, duration, instant
from timesheets.models import Segment, Timesheet

RUNNING = Timesheet.Status.RUNNING
STOPPED = Timesheet.Status.STOPPED


class SQLiteBackend:
    def write_runs(
        self,
        *,
        endings: Sequence[Ending],
        opening: Opening | None,
        at: datetime,
        events: Sequence[NewEvent],
        actor_id: int | None,
    ) -> None:
        for ending in endings:
            Segment.objects.filter(timesheet_id=ending.timesheet_id, ended_at__isnull=True).update(
                ended_at=ending.ended_at, end_reason=ending.reason
            )
            changes = {"auto_stopped": True} if ending.auto else {}
            Timesheet.objects.filter(pk=ending.timesheet_id, status=RUNNING).update(
                imputed=ending.imputed,
                status=STOPPED,
                accrued_until=None,
                running_since=None,
                slot=None,
                updated_at=at,
                **changes,
            )
        if opening is not None:
            Segment.objects.create(
                timesheet_id=opening.timesheet_id,
                owner_id=opening.owner_id,
                exclusive=opening.exclusive,
                started_at=opening.started_at,
            )
            Timesheet.objects.filter(pk=opening.timesheet_id, status=STOPPED).update(
                status=RUNNING,
                accrued_until=opening.started_at,
                running_since=opening.started_at,
                slot=opening.slot,
                updated_at=at,
            )
        event_record(events=events, actor_id=actor_id, occurred_at=at)

    def accrue_range(
        self,
        *,
        after_id: int,
        last_id: int,
        now: datetime | None,
        max_run: timedelta | None,
        lock_timeout: float,
        statement_timeout: float,
    ) -> int:
        with self.job_transaction(
            lock_timeout=lock_timeout, statement_timeout=statement_timeout, durable=False
        ):
            target: Expression = instant(now or timezone.now())
            if max_run is not None:
                target = Earliest(target, Shift(F("running_since"), duration(max_run)))
            return Timesheet.objects.filter(
                status=RUNNING, pk__gt=after_id, pk__lte=last_id, accrued_until__lt=target
            ).update(
                imputed=Plus(F("imputed"), Elapsed(target, F("accrued_until"))),
                accrued_until=target,
            )

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
            except OperationalError as error:
                if not _is_busy(error):
                    raise
                raise DatabaseBusy(waited_s=statement_timeout) from error
            finally:
                busy_timeout = settings.DATABASES[connection.alias]["OPTIONS"].get("timeout", 5)
                cursor.execute(f"PRAGMA busy_timeout = {round(busy_timeout * 1000)}")


def _is_busy(error: OperationalError) -> bool:
    """Whether SQLite answered "busy": another connection held the lock all the time we waited."""
    cause = error.__cause__
    if not isinstance(cause, sqlite3.OperationalError):
        return False
    # Extended result codes keep the primary code in their low byte (SQLITE_BUSY_SNAPSHOT...).
    return cause.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY


BACKEND = SQLiteBackend()
