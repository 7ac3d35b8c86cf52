"""The floor: the accrual as one hand-written UPDATE sent straight through the driver.

Same rows (``status = 'running'`` and a watermark behind the target), same arithmetic
(``imputed += target - watermark``, ``watermark = target``, the target capped at the end of the
maximum run), no ORM, no thread hop, no pool. What the job costs above this is the price of
Django.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

import psycopg

from timesheets.models import Timesheet

TABLE: LiteralString = "timesheets_timesheet"
assert Timesheet._meta.db_table == TABLE
MICROSECONDS = 1_000_000  # per second


def postgresql_statement(*, limited: bool) -> LiteralString:
    target = "LEAST(%(now)s, running_since + %(limit)s)" if limited else "%(now)s::timestamptz"
    return (
        f"UPDATE {TABLE} SET imputed = imputed + ({target} - accrued_until), "  # noqa: S608
        f"accrued_until = {target} WHERE status = 'running' AND accrued_until < {target}"
    )


def _microseconds(column: LiteralString) -> LiteralString:
    # Django keeps SQLite datetimes as UTC text, 'YYYY-MM-DD HH:MM:SS[.ffffff]'.
    return (
        f"(CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER) * {MICROSECONDS} "
        f"+ CAST(substr({column} || '.000000', 21, 6) AS INTEGER))"
    )


def sqlite_statement(*, limited: bool) -> LiteralString:
    watermark = _microseconds("accrued_until")
    if limited:
        end = f"({_microseconds('running_since')} + :limit_us)"
        target = f"MIN(:now_us, {end})"
        target_text = (
            f"CASE WHEN {end} < :now_us THEN "
            f"strftime('%Y-%m-%d %H:%M:%S', {end} / {MICROSECONDS}, 'unixepoch') "
            f"|| printf('.%06d', {end} % {MICROSECONDS}) ELSE :now_text END"
        )
    else:
        target, target_text = ":now_us", ":now_text"
    return (
        f"UPDATE {TABLE} SET imputed = imputed + ({target} - {watermark}), "  # noqa: S608
        f"accrued_until = {target_text} WHERE status = 'running' AND {watermark} < {target}"
    )


def _sqlite_parameters(now: datetime, limit: timedelta | None) -> dict[str, Any]:
    utc = now.astimezone(UTC).replace(tzinfo=None)
    epoch = datetime(1970, 1, 1)  # naive UTC, as SQLite stores it
    parameters: dict[str, Any] = {
        "now_us": (utc - epoch) // timedelta(microseconds=1),
        "now_text": utc.isoformat(sep=" "),
    }
    if limit is not None:
        parameters["limit_us"] = limit // timedelta(microseconds=1)
    return parameters


def accrue_postgresql(
    connection: psycopg.Connection[Any], *, now: datetime, limit: timedelta | None
) -> int:
    """The UPDATE; in autocommit, as Django sends it. Return the rows moved."""
    cursor = connection.execute(
        postgresql_statement(limited=limit is not None), {"now": now, "limit": limit}
    )
    return cursor.rowcount


def execute_sqlite(
    connection: sqlite3.Connection, *, now: datetime, limit: timedelta | None
) -> int:
    """The UPDATE, in whatever transaction is open. Return the rows moved."""
    cursor = connection.execute(
        sqlite_statement(limited=limit is not None), _sqlite_parameters(now, limit)
    )
    return cursor.rowcount


def accrue_sqlite(connection: sqlite3.Connection, *, now: datetime, limit: timedelta | None) -> int:
    """The UPDATE in an immediate transaction of its own, as Django runs it on SQLite."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        rows = execute_sqlite(connection, now=now, limit=limit)
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return rows
