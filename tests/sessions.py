"""What a database session is set to, as the database itself says."""

from __future__ import annotations

from typing import Any

from django.db import connection


def session_of(driver_connection: Any) -> dict[str, str]:
    """How long the statements of the driver connection's current transaction may wait (and,
    on PostgreSQL, whether its commit waits for the disk), asked on that connection itself,
    which no execute wrapper sees."""
    cursor = driver_connection.cursor()
    try:
        if connection.vendor == "postgresql":
            shown = {}
            for name in ("lock_timeout", "statement_timeout", "synchronous_commit"):
                cursor.execute(f"SHOW {name}")
                shown[name] = cursor.fetchone()[0]
            return shown
        cursor.execute("PRAGMA busy_timeout")
        return {"busy_timeout_ms": str(cursor.fetchone()[0])}
    finally:
        cursor.close()
