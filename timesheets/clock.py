"""The one clock of the time model.

On PostgreSQL every instant written into the time model comes from the database server's clock,
read by the statement that writes it (``statement_timestamp()``: one reading per statement, taken
when the statement starts, after any lock an earlier statement of its transaction waited for).
Web and worker processes on hosts whose clocks disagree then still agree on time, because none of
them uses its own. SQLite lives on one host,
so that host's clock serves. Tests pass an explicit instant instead; production code passes none.

Whatever the clocks do, the writes guard the time model (see ``timesheets.services``): a
watermark never moves back, imputed time never decreases, and a run never starts before the end
of the previous one.
"""

from __future__ import annotations

from datetime import datetime

from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Expression
from django.db.models.functions import Now
from django.utils import timezone

from timesheets.expressions import instant


def database_clock_serves(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether the database's clock is the time model's (PostgreSQL), or the host's (SQLite)."""
    return connections[using].vendor == "postgresql"


def current(now: datetime | None = None, *, using: str = DEFAULT_DB_ALIAS) -> Expression:
    """The instant a write records, as an expression of the writing statement."""
    if now is not None:
        return instant(now)
    if database_clock_serves(using):
        return Now()  # statement_timestamp() on PostgreSQL
    return instant(timezone.now())


def read(now: datetime | None = None, *, using: str = DEFAULT_DB_ALIAS) -> datetime:
    """The current instant as the time model sees it: for reads and for display."""
    if now is not None:
        return now
    if not database_clock_serves(using):
        return timezone.now()
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        (value,) = cursor.fetchone()
    assert isinstance(value, datetime)
    return value


async def aread(now: datetime | None = None, *, using: str = DEFAULT_DB_ALIAS) -> datetime:
    if now is not None or not database_clock_serves(using):
        return read(now, using=using)
    return await sync_to_async(read)(using=using)
