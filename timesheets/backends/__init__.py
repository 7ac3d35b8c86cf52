"""The time model's writes, one implementation per database.

``timesheets.services`` decides what to write (which runs a start replaces, which slot it takes)
and holds the transaction; a backend writes it. PostgreSQL gets set-based statements that read
the database's own clock and return the new state (no refresh SELECT); SQLite, where one
transaction at a time holds the whole database and the host's clock serves, gets the same rules
written with the ORM. The same tests run against both.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from django.db import DEFAULT_DB_ALIAS, connections


@dataclass(frozen=True)
class RunState:
    """A timesheet's time fields after a write, and the instant the write read as now."""

    status: str
    imputed: timedelta
    accrued_until: datetime | None
    running_since: datetime | None
    slot: int | None
    auto_stopped: bool
    updated_at: datetime
    read_at: datetime


@dataclass(frozen=True)
class Batch:
    """What one batch of an accrual did: rows moved, and the last id it looked at."""

    moved: int
    last_id: int | None


class Backend(Protocol):
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
    ) -> RunState: ...

    def stop(
        self, *, timesheet_id: int, reason: str, now: datetime | None, max_run: timedelta | None
    ) -> RunState: ...

    def accrue_batch(
        self, *, after_id: int, size: int, now: datetime | None, max_run: timedelta | None
    ) -> Batch: ...

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
