"""The time model's writes on PostgreSQL: one statement each, on the database's clock.

Every statement reads the time as ``COALESCE(%(now)s, statement_timestamp())``: the instant a
test passes, else the database server's clock when the statement started. Each returns the new
state with ``RETURNING``, so nothing is read back afterwards.

The statements are data-modifying ``WITH`` queries. Their parts run in the order their data
requires: a part that reads another part's output (here ``max(...)`` and ``count(*)`` over it)
runs after that part has finished. The overlap exclusion constraints are checked at the end of
each statement (they are ``DEFERRABLE INITIALLY IMMEDIATE``).

The caller has locked the timesheets a start or a stop changes, in an earlier statement of the
same transaction. That matters: a statement sees the rows committed before it started, so a
statement that itself waited for a lock could miss the run that the lock's holder had just
opened, and leave it open.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, LiteralString

from django.db import connection, transaction

from timesheets.backends import Batch, RunState
from timesheets.models import Segment, Timesheet

TIMESHEETS: LiteralString = "timesheets_timesheet"
SEGMENTS: LiteralString = "timesheets_segment"
assert Timesheet._meta.db_table == TIMESHEETS
assert Segment._meta.db_table == SEGMENTS

STATE: LiteralString = (
    "status, imputed, accrued_until, running_since, slot, auto_stopped, updated_at"
)

# The instant a run's time counts up to: now, but never past the maximum run length and never
# before the watermark (time already counted stays counted). A null limit means none.
RUN_END: LiteralString = (
    "GREATEST({t}.accrued_until, LEAST(clock.now, {t}.running_since + %(max_run)s::interval))"
)
REACHED_LIMIT: LiteralString = "COALESCE({end} >= {t}.running_since + %(max_run)s::interval, false)"
CLOCK: LiteralString = (
    "clock AS (SELECT COALESCE(%(now)s::timestamptz, statement_timestamp()) AS now)"
)


def _ending(*, which: LiteralString, reason: LiteralString) -> LiteralString:
    """The parts of a statement that stop the running timesheets ``which`` selects (a condition
    on ``t``): ``ending`` (where each run ends), ``closed`` (their runs' ends) and ``stopped``
    (their new state)."""
    reached = REACHED_LIMIT.format(end="e.end_at", t="e")
    return f"""
ending AS MATERIALIZED (
    SELECT t.id, t.accrued_until, t.running_since, {RUN_END.format(t="t")} AS end_at
    FROM {TIMESHEETS} t, clock
    WHERE {which} AND t.status = 'running'
),
closed AS (
    UPDATE {SEGMENTS} s
    SET ended_at = e.end_at, end_reason = CASE WHEN {reached} THEN 'auto' ELSE {reason} END
    FROM ending e
    WHERE s.timesheet_id = e.id AND s.ended_at IS NULL
    RETURNING s.ended_at
),
stopped AS (
    UPDATE {TIMESHEETS} t
    SET imputed = t.imputed + (e.end_at - e.accrued_until),
        status = 'stopped', accrued_until = NULL, running_since = NULL, slot = NULL,
        updated_at = clock.now, auto_stopped = t.auto_stopped OR {reached}
    FROM ending e, clock
    WHERE t.id = e.id
    RETURNING {", ".join(f"t.{field}" for field in STATE.split(", "))}
)"""  # noqa: S608  (constants only; values are parameters)


START = f"""
WITH {CLOCK},
{_ending(which="t.id = ANY(%(replace)s)", reason="'replaced'")},
opening AS (
    -- Never before the end of this timesheet's last run, nor of the runs just replaced, nor,
    -- when the person's runs must not overlap, of any run of theirs: clocks may disagree or
    -- step back, and a transaction's clock reading may be older than another's commit.
    SELECT GREATEST(
        clock.now,
        (SELECT max(ended_at) FROM closed),
        (SELECT max(ended_at) FROM {SEGMENTS} WHERE timesheet_id = %(id)s),
        CASE WHEN %(exclusive)s
             THEN (SELECT max(ended_at) FROM {SEGMENTS} WHERE owner_id = %(owner)s) END
    ) AS at,
    (SELECT count(*) FROM stopped) AS replaced  -- frees their slots before the update below
    FROM clock
),
opened AS (
    INSERT INTO {SEGMENTS} (timesheet_id, owner_id, exclusive, started_at, ended_at, end_reason)
    SELECT %(id)s, %(owner)s, %(exclusive)s, opening.at, NULL, '' FROM opening
)
UPDATE {TIMESHEETS} t
SET status = 'running', accrued_until = opening.at, running_since = opening.at,
    slot = %(slot)s, updated_at = clock.now
FROM opening, clock
WHERE t.id = %(id)s AND t.status = 'stopped'
RETURNING {STATE}, clock.now
"""  # noqa: S608

STOP = f"""
WITH {CLOCK},
{_ending(which="t.id = %(id)s", reason="%(reason)s")}
SELECT {STATE}, (SELECT now FROM clock) FROM stopped
"""  # noqa: S608

# A batch: the next running timesheets in id order that no one else holds (a start or a stop
# holding one is skipped; the next accrual takes it), locked, then moved to the target. Several
# processes take disjoint batches and never wait for each other, so none can deadlock.
ACCRUE_BATCH = f"""
WITH {CLOCK},
batch AS MATERIALIZED (
    SELECT id FROM {TIMESHEETS}
    WHERE status = 'running' AND id > %(after)s
    ORDER BY id
    LIMIT %(size)s
    FOR NO KEY UPDATE SKIP LOCKED
),
moved AS (
    UPDATE {TIMESHEETS} t
    SET imputed = t.imputed
            + (LEAST(clock.now, t.running_since + %(max_run)s::interval) - t.accrued_until),
        accrued_until = LEAST(clock.now, t.running_since + %(max_run)s::interval)
    FROM batch, clock
    WHERE t.id = batch.id
      AND t.accrued_until < LEAST(clock.now, t.running_since + %(max_run)s::interval)
    RETURNING 1
)
SELECT (SELECT count(*) FROM moved), (SELECT max(id) FROM batch)
"""  # noqa: S608


def _row(sql: str, **parameters: Any) -> tuple[Any, ...]:
    """Run one statement; return the one row it answers."""
    with connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        row = cursor.fetchone()
    assert row is not None, "the caller locked the timesheet in the state this statement needs"
    return tuple(row)


def _state(row: tuple[Any, ...]) -> RunState:
    status, imputed, accrued_until, running_since, slot, auto_stopped, updated_at, read_at = row
    return RunState(
        status=status,
        imputed=imputed,
        accrued_until=accrued_until,
        running_since=running_since,
        slot=slot,
        auto_stopped=auto_stopped,
        updated_at=updated_at,
        read_at=read_at,
    )


class PostgreSQLBackend:
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
        return _state(
            _row(
                START,
                id=timesheet_id,
                owner=owner_id,
                replace=replace,
                slot=slot,
                exclusive=exclusive,
                now=now,
                max_run=max_run,
            )
        )

    def stop(
        self, *, timesheet_id: int, reason: str, now: datetime | None, max_run: timedelta | None
    ) -> RunState:
        return _state(_row(STOP, id=timesheet_id, reason=reason, now=now, max_run=max_run))

    def accrue_batch(
        self, *, after_id: int, size: int, now: datetime | None, max_run: timedelta | None
    ) -> Batch:
        moved, last_id = _row(ACCRUE_BATCH, after=after_id, size=size, now=now, max_run=max_run)
        return Batch(moved=moved, last_id=last_id)

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
        with transaction.atomic(), connection.cursor() as cursor:
            # For this transaction only: the connection goes back to the pool unchanged.
            cursor.execute("; ".join(settings))
            yield


BACKEND = PostgreSQLBackend()
