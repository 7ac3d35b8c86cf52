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
from typing import Protocol

from django.db import DEFAULT_DB_ALIAS, connections

from events.services import NewEvent


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
        self, *, after_id: int, last_id: int, now: datetime | None, max_run: timedelta | None
    ) -> int:
        """Move the watermarks of the running timesheets whose id is in ``(after_id,
        last_id]`` up to now, capped at ``max_run``; return how many moved."""
        ...

    def job_transaction(
        self, *, lock_timeout: float, statement_timeout: float, durable: bool = True
    ) -> AbstractContextManager[None]:
        """A transaction of a job's, whose statements give up after these many seconds.

        ``durable=False``: the work can be redone, so the commit need not wait for the disk.
        """
        ...


def backend(using: str = DEFAULT_DB_ALIAS) -> Backend:
    if connections[using].vendor == "postgresql":
        from timesheets.backends import postgresql

        return postgresql.BACKEND
    from timesheets.backends import sqlite

    return sqlite.BACKEND
