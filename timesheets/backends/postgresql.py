"""The time model's writes on PostgreSQL: one statement each.

A start or a stop (with the runs it replaces, and its events) is one data-modifying ``WITH``
statement over values the service has worked out from the rows it locked. Its parts run in the
order their data requires (a part that reads another's output, here through ``count(*)``, runs
after it), and the overlap exclusion constraints are checked at the end of the statement (they
are ``DEFERRABLE INITIALLY IMMEDIATE``), so one statement may end a run and start the next.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, LiteralString

import psycopg.errors
from django.db import OperationalError, connection, transaction
from psycopg.types.json import Jsonb

from events.models import Event
from events.services import ORDER_LOCK, NewEvent
from timesheets.backends import TIMESHEETS, Ending, Opening
from timesheets.exceptions import DatabaseBusy
from timesheets.models import Segment

SEGMENTS: LiteralString = "timesheets_segment"
EVENTS: LiteralString = "events_event"
assert Segment._meta.db_table == SEGMENTS
assert Event._meta.db_table == EVENTS

# How long an accrual batch waits for a held row before it locks around the held ones instead:
# the server's smallest lock timeout, so that a batch waits that long at most for a start, a
# stop or another accruing process.
SHORT_LOCK_WAIT_S = 0.001

WRITE_RUNS = f"""
WITH ending AS MATERIALIZED (
    SELECT * FROM unnest(
        %(end_ids)s::bigint[], %(end_at)s::timestamptz[], %(end_reasons)s::text[],
        %(end_imputed)s::interval[], %(end_auto)s::boolean[]
    ) AS e(id, ended_at, reason, imputed, auto)
),
closed AS (
    UPDATE {SEGMENTS} s SET ended_at = e.ended_at, end_reason = e.reason
    FROM ending e
    WHERE s.timesheet_id = e.id AND s.ended_at IS NULL
    RETURNING 1
),
stopped AS (
    UPDATE {TIMESHEETS} t
    SET imputed = e.imputed, status = 'stopped', accrued_until = NULL, running_since = NULL,
        slot = NULL, updated_at = %(at)s, auto_stopped = t.auto_stopped OR e.auto
    FROM ending e
    WHERE t.id = e.id AND t.status = 'running'
    RETURNING 1
),
opened AS (
    INSERT INTO {SEGMENTS} (timesheet_id, owner_id, exclusive, started_at, ended_at, end_reason)
    SELECT %(open_id)s, %(open_owner)s, %(open_exclusive)s, %(open_at)s, NULL, ''
    FROM (SELECT count(*) FROM closed) AS after_closing
    WHERE %(open_id)s IS NOT NULL
    RETURNING 1
),
started AS (
    -- After the stops: a replaced run frees the slot this one takes.
    UPDATE {TIMESHEETS} t
    SET status = 'running', accrued_until = %(open_at)s, running_since = %(open_at)s,
        slot = %(open_slot)s, updated_at = %(at)s
    FROM (SELECT count(*) FROM stopped) AS after_stopping
    WHERE t.id = %(open_id)s AND t.status = 'stopped'
    RETURNING 1
),
ordered AS MATERIALIZED (
    -- Event ids in commit order (see events.services), taken last, once the writes are done.
    SELECT pg_advisory_xact_lock(%(order_lock)s)
    FROM (SELECT count(*) FROM stopped) AS s, (SELECT count(*) FROM started) AS r
),
recorded AS (
    INSERT INTO {EVENTS} (type, occurred_at, actor_id, owner_id, timesheet_id, data)
    SELECT e.type, %(at)s, %(actor)s, e.owner, e.timesheet, e.data
    FROM ordered, unnest(
        %(event_types)s::text[], %(event_owners)s::bigint[], %(event_timesheets)s::bigint[],
        %(event_data)s::jsonb[]
    ) AS e(type, owner, timesheet, data)
    RETURNING 1
)
SELECT (SELECT count(*) FROM stopped), (SELECT count(*) FROM opened),
       (SELECT count(*) FROM started), (SELECT count(*) FROM recorded)
"""  # noqa: S608  (constants only; values are parameters)

# Where an accrual moves a running timesheet's watermark: the statement's clock, capped at the
# end of the maximum run. Only a watermark behind it moves, so a row that two processes reach
# is counted once, and a watermark never goes back.
TARGET: LiteralString = "LEAST(clock.now, t.running_since + %(max_run)s::interval)"


def _accrual(*, rows: LiteralString, locking: LiteralString = "") -> str:
    """One accrual batch: the running timesheets ``rows`` chooses (after the ``WITH`` clause
    ``locking``, if any) move to the target; the driver's row count says how many moved."""
    return f"""{locking}
UPDATE {TIMESHEETS} t
SET imputed = t.imputed + ({TARGET} - t.accrued_until), accrued_until = {TARGET}
FROM (SELECT COALESCE(%(now)s::timestamptz, statement_timestamp()) AS now) AS clock
WHERE {rows}
  AND t.status = 'running'
  AND t.accrued_until < {TARGET}
"""  # noqa: S608  (constants only; values are parameters)


# The batch's running timesheets, updated by id range without locking them first: a row lock
# is a write of its own, as costly as the update. A row someone holds (a start, a stop,
# another accruing process) would make the UPDATE wait for it, so it runs under
# SHORT_LOCK_WAIT_S and the batch then falls back to ACCRUE_HELD_RANGE.
ACCRUE_RANGE = _accrual(rows="t.id > %(after)s AND t.id <= %(last)s")

# The same batch when some of its rows are held: the ones no one else holds are locked, then
# moved; the held ones wait for the next accrual. Several processes lock this way and never
# wait for each other, so none can deadlock. The UPDATE finds the locked rows by their physical
# address (a TID scan, no index probe per row): locking a row leaves it where it is, and no one
# else can move it while it is locked. Should the lock have followed a row to a newer version
# than the address read, the address no longer matches and the row waits for the next accrual;
# no time is lost, since an accrual moves a watermark from where it is.
ACCRUE_HELD_RANGE = _accrual(
    locking=f"""WITH batch AS MATERIALIZED (
    SELECT ctid FROM {TIMESHEETS}
    WHERE status = 'running' AND id > %(after)s AND id <= %(last)s
    FOR NO KEY UPDATE SKIP LOCKED
)""",  # noqa: S608
    rows="t.ctid = ANY(ARRAY(SELECT ctid FROM batch))",
)


def _row(sql: str, **parameters: Any) -> tuple[Any, ...]:
    """Run one statement; return the one row it answers."""
    with connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        row = cursor.fetchone()
    assert row is not None
    return tuple(row)


def _row_count(sql: str, parameters: dict[str, Any]) -> int:
    """Run one data-modifying statement; return how many rows it changed."""
    with connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        return int(cursor.rowcount)


def _cancelled_while_waiting(
    error: OperationalError, statement_timeout: float, *, since: float
) -> bool:
    """Whether a statement was cancelled otherwise than by its statement timeout.

    When a lock timeout fires just as the lock is granted and the statement then waits for
    another lock (an UPDATE waits for a row's tuple lock, then for its holder's transaction),
    PostgreSQL reports the timeout as a cancel "due to user request"; with a timeout of a
    millisecond under several accruing processes, that happens. A statement timeout is a
    cancel too, told apart by the time the statement took (its message is translated).
    """
    return (
        isinstance(error.__cause__, psycopg.errors.QueryCanceled)
        and time.monotonic() - since < statement_timeout
    )


class PostgreSQLBackend:
    def write_runs(
        self,
        *,
        endings: Sequence[Ending],
        opening: Opening | None,
        at: datetime,
        events: Sequence[NewEvent],
        actor_id: int | None,
    ) -> None:
        stopped, opened, started, recorded = _row(
            WRITE_RUNS,
            end_ids=[ending.timesheet_id for ending in endings],
            end_at=[ending.ended_at for ending in endings],
            end_reasons=[ending.reason for ending in endings],
            end_imputed=[ending.imputed for ending in endings],
            end_auto=[ending.auto for ending in endings],
            open_id=None if opening is None else opening.timesheet_id,
            open_owner=None if opening is None else opening.owner_id,
            open_exclusive=opening is not None and opening.exclusive,
            open_at=None if opening is None else opening.started_at,
            open_slot=None if opening is None else opening.slot,
            at=at,
            actor=actor_id,
            order_lock=ORDER_LOCK,
            event_types=[str(event.type) for event in events],
            event_owners=[event.owner_id for event in events],
            event_timesheets=[event.timesheet_id for event in events],
            event_data=[Jsonb(event.data) for event in events],
        )
        # The service locked these rows in these states: anything else is a bug.
        assert (stopped, opened, started, recorded) == (
            len(endings),
            int(opening is not None),
            int(opening is not None),
            len(events),
        )

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
        parameters = {"after": after_id, "last": last_id, "now": now, "max_run": max_run}
        started = time.monotonic()
        try:
            with self.job_transaction(
                lock_timeout=SHORT_LOCK_WAIT_S, statement_timeout=statement_timeout, durable=False
            ):
                return _row_count(ACCRUE_RANGE, parameters)
        except DatabaseBusy:
            pass
        except OperationalError as error:
            if not _cancelled_while_waiting(error, statement_timeout, since=started):
                raise
        # A row of the range is held: a transaction of its own, rather than a savepoint in
        # the first, spares every batch that finds none held two round trips.
        with self.job_transaction(
            lock_timeout=lock_timeout, statement_timeout=statement_timeout, durable=False
        ):
            return _row_count(ACCRUE_HELD_RANGE, parameters)

    @contextmanager
    def job_transaction(
        self, *, lock_timeout: float, statement_timeout: float, durable: bool = True
    ) -> Iterator[None]:
        settings = [
            f"SET LOCAL lock_timeout = {round(lock_timeout * 1000)}",
            f"SET LOCAL statement_timeout = {round(statement_timeout * 1000)}",
        ]
        if not durable:
            # The commit returns before its record reaches the disk. A crash may then lose the
            # last few such commits, never more; an accrual loses nothing by that, since the
            # next one moves the same watermarks from where they were.
            settings.append("SET LOCAL synchronous_commit = off")
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                # For this transaction only: the connection goes back to the pool unchanged.
                cursor.execute("; ".join(settings))
                yield
        except OperationalError as error:
            if not isinstance(error.__cause__, psycopg.errors.LockNotAvailable):
                raise
            raise DatabaseBusy(waited_s=lock_timeout) from error


BACKEND = PostgreSQLBackend()
