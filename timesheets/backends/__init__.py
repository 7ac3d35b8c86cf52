"""The time model's writes, one implementation per database.

``timesheets.services`` decides what to write, from rows it has locked and the time model's
clock read in the same transaction: where each run ends, where the new one starts, which slot
it takes, what events say. A backend writes it: PostgreSQL in one statement (with its events),
SQLite, where one transaction at a time holds the whole database, with the ORM. The accrual is
set-based: a backend moves a batch of watermarks in one statement. The same tests run against
both.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import LiteralString, Protocol

from django.db import DEFAULT_DB_ALIAS, connection, connections

from events.services import NewEvent
from timesheets.models import Timesheet


@dataclass(frozen=True)
class Ending:
    """A run that ends: where, why, and the timesheet's imputed time once it has."""

    timesheet_id: int
    ended_at: datetime
    reason: str
    imputed: timedelta
    auto: bool  # it reached the maximum run length: flagged for review


@dataclass(frozen=True)
class Opening:
    """A run that starts."""

    timesheet_id: int
    owner_id: int
    started_at: datetime
    slot: int | None
    exclusive: bool


class Backend(Protocol):
    def write_runs(
        self,
        *,
        endings: Sequence[Ending],
        opening: Opening | None,
        at: datetime,
        events: Sequence[NewEvent],
        actor_id: int | None,
    ) -> None:
        """End these runs, start that one, record the events, all at ``at``."""
        ...

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
        """Move the watermarks of the running timesheets whose id is in ``(after_id,
        last_id]`` up to now, capped at ``max_run``; return how many moved.

        In job transactions of its own (see ``job_transaction``), not durable: an accrual
        lost to a crash is redone by the next one, which moves the same watermarks from where
        they are.
        """
        ...

    def job_transaction(
        self, *, lock_timeout: float, statement_timeout: float, durable: bool = True
    ) -> AbstractContextManager[None]:
        """A transaction of a job's, whose statements give up after these many seconds.

        ``durable=False``: the work can be redone, so the commit need not wait for the disk.
        """
        ...


TIMESHEETS: LiteralString = "timesheets_timesheet"
assert Timesheet._meta.db_table == TIMESHEETS

# The last id of every ``size``-th running timesheet in id order, then the last running id: each
# step skips ``size`` entries of the index of running ids from where the previous one ended, so
# the statement walks that index once and keeps nothing but the ends (a window numbering every
# row measured four to five times slower, on both databases). Ids only grow, so it ends.
BATCH_ENDS = f"""
WITH RECURSIVE ends(id) AS (
    SELECT (SELECT id FROM {TIMESHEETS} WHERE status = 'running'
            ORDER BY id LIMIT 1 OFFSET %(skip)s)
    UNION ALL
    SELECT (SELECT t.id FROM {TIMESHEETS} t WHERE t.status = 'running' AND t.id > ends.id
            ORDER BY t.id LIMIT 1 OFFSET %(skip)s)
    FROM ends WHERE ends.id IS NOT NULL
)
SELECT id FROM ends WHERE id IS NOT NULL
UNION ALL
SELECT max(id) FROM {TIMESHEETS} WHERE status = 'running'
"""  # noqa: S608  (constants only; values are parameters)


def batch_ends(*, size: int) -> list[int]:
    """The last id of each batch of ``size`` running timesheets, in id order (the same
    statement on both databases)."""
    with connection.cursor() as cursor:
        cursor.execute(BATCH_ENDS, {"skip": size - 1})
        found = [row[0] for row in cursor.fetchall() if row[0] is not None]
    return sorted(set(found))


def backend(using: str = DEFAULT_DB_ALIAS) -> Backend:
    if connections[using].vendor == "postgresql":
        from timesheets.backends import postgresql

        return postgresql.BACKEND
    from timesheets.backends import sqlite

    return sqlite.BACKEND
