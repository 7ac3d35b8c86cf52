"""The benchmark's data: N people, each with one running timesheet and its open segment.

Rows are made by the database itself (``INSERT ... SELECT`` over a generated series), so a
million take seconds and no Python object exists per row. Every timesheet starts one hour
before it is made, with its watermark at its start and nothing imputed: the state that
``reset()`` restores before each measured run, so that every run does the same work.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, connection

from timesheets.models import Segment, Timesheet

OWNER_PREFIX = "owner"  # usernames of the people owning the benchmark's rows
OWNER_DIGITS = 8  # zero-padded, so that usernames sort like their numbers
RUN_AGE = timedelta(hours=1)  # how long each timesheet has been running when it is made

TIMESHEETS = Timesheet._meta.db_table
SEGMENTS = Segment._meta.db_table


def _owner(index: int) -> str:
    return f"{OWNER_PREFIX}{index:0{OWNER_DIGITS}d}"


def _execute(statement: str, params: list[Any] | tuple[Any, ...] = ()) -> int:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return int(cursor.rowcount)


def _datetime(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _sqlite() -> bool:
    return bool(connection.vendor == "sqlite")


def running_count() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {TIMESHEETS} WHERE status = 'running'")  # noqa: S608
        row = cursor.fetchone()
    return int(row[0])


def ensure_running(*, rows: int, project_id: int, now: datetime) -> int:
    """Make owners 1..rows exist, each with one running timesheet; return the rows added."""
    first, last = _owner(1), _owner(rows)
    joined = _datetime(now)
    if _sqlite():
        _execute(
            "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < %s) "  # noqa: S608
            "INSERT OR IGNORE INTO auth_user (password, is_superuser, username, first_name, "
            "last_name, email, is_staff, is_active, date_joined) "
            f"SELECT '!', 0, printf('{OWNER_PREFIX}%%0{OWNER_DIGITS}d', i), '', '', '', 0, 1, %s "
            "FROM seq",
            [rows, joined],
        )
    else:
        _execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, "  # noqa: S608
            "email, is_staff, is_active, date_joined) "
            f"SELECT '!', FALSE, '{OWNER_PREFIX}' || lpad(i::text, {OWNER_DIGITS}, '0'), "
            "'', '', '', FALSE, TRUE, %s FROM generate_series(1, %s) AS i "
            "ON CONFLICT (username) DO NOTHING",
            [joined, rows],
        )
    since = _datetime(now - RUN_AGE)
    zero, false = ("0", "0") if _sqlite() else ("interval '0'", "FALSE")
    added = _execute(
        f"INSERT INTO {TIMESHEETS} (owner_id, project_id, description, status, imputed, "  # noqa: S608
        "accrued_until, running_since, slot, auto_stopped, created_at, updated_at) "
        f"SELECT u.id, %s, '', 'running', {zero}, %s, %s, 1, {false}, %s, %s FROM auth_user u "
        "WHERE u.username >= %s AND u.username <= %s "
        f"AND NOT EXISTS (SELECT 1 FROM {TIMESHEETS} t WHERE t.owner_id = u.id) ORDER BY u.id",
        [project_id, since, since, joined, joined, first, last],
    )
    true = "1" if _sqlite() else "TRUE"
    _execute(
        f"INSERT INTO {SEGMENTS} (timesheet_id, owner_id, exclusive, started_at, ended_at, "  # noqa: S608
        f"end_reason) SELECT t.id, t.owner_id, {true}, t.running_since, NULL, '' "
        f"FROM {TIMESHEETS} t "
        "WHERE t.status = 'running' AND NOT EXISTS "
        f"(SELECT 1 FROM {SEGMENTS} s WHERE s.timesheet_id = t.id AND s.ended_at IS NULL)"
    )
    _execute(f"ANALYZE {TIMESHEETS}")
    return added


def reset() -> int:
    """Put every running timesheet back at its start: watermark at the start, nothing imputed."""
    zero = "0" if _sqlite() else "interval '0'"
    return _execute(
        f"UPDATE {TIMESHEETS} SET imputed = {zero}, accrued_until = running_since "  # noqa: S608
        "WHERE status = 'running'"
    )


def settle() -> None:
    """Start each measured run from the same state: no dead rows left by the previous run's
    UPDATE, fresh statistics, and dirty pages written out (PostgreSQL), or the write-ahead log
    folded back into the database file (SQLite)."""
    if _sqlite():
        _execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return
    _execute(f"VACUUM (ANALYZE) {TIMESHEETS}")
    # CHECKPOINT needs superuser or pg_checkpoint; without, runs start with some pages dirty.
    with contextlib.suppress(DatabaseError):
        _execute("CHECKPOINT")


def remove_owned() -> None:
    """Delete the timesheets (and segments) of the owners ``ensure_running`` made."""
    owned = (
        f"SELECT t.id FROM {TIMESHEETS} t JOIN auth_user u ON u.id = t.owner_id "  # noqa: S608
        f"WHERE u.username LIKE '{OWNER_PREFIX}%%'"
    )
    _execute(f"DELETE FROM {SEGMENTS} WHERE timesheet_id IN ({owned})", [])  # noqa: S608
    _execute(f"DELETE FROM {TIMESHEETS} WHERE id IN ({owned})", [])  # noqa: S608


def clear() -> None:
    """Delete every timesheet and segment; people and projects stay."""
    if _sqlite():
        _execute(f"DELETE FROM {SEGMENTS}")  # noqa: S608
        _execute(f"DELETE FROM {TIMESHEETS}")  # noqa: S608
    else:
        _execute(f"TRUNCATE {SEGMENTS}, {TIMESHEETS} CASCADE")  # corrections refer to them
