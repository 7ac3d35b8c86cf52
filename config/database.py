"""How PostgreSQL connections are handed out by the pool."""

from __future__ import annotations

from typing import Any

from psycopg_pool import ConnectionPool


def check_connection(connection: Any) -> None:
    """Hand out only working connections; at the first broken one, check the whole pool.

    A server restart breaks every idle connection at once. The pool would find them one by
    one, waiting a little longer after each (1 s, 2 s, 4 s, …), so a pool full of dead
    connections would outlast any caller's timeout. Checking them all at the first failure
    replaces every dead one in one go.
    """
    try:
        ConnectionPool.check_connection(connection)
    except Exception:
        from django.db import DEFAULT_DB_ALIAS, connections

        pool = getattr(connections[DEFAULT_DB_ALIAS], "pool", None)
        if pool is not None:
            pool.check()
        raise
