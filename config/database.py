"""How PostgreSQL connections are handed out by the pool, and how the pool rides out an outage.

While the database answers, a caller that finds every connection busy waits up to
``POOL_TIMEOUT`` for one to be returned: under load that is a short queue, not a failure. Once
an attempt to connect has failed, no connection is coming soon: the callers already waiting are
told so at once, with the reason, and later ones wait only ``OUTAGE_TIMEOUT``, until an attempt
succeeds again. A failed attempt is not retried in the background (the pool's own retries back
off exponentially, and would notice a recovered database long after it is back): the next
caller that needs a connection tries again, so the first one after the database returns gets
through.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any, Self

import psycopg
from psycopg_pool import ConnectionPool
from psycopg_pool.pool import WaitingClient

POOL_TIMEOUT = 10.0  # seconds a caller waits for a free connection while the database answers
OUTAGE_TIMEOUT = 0.5  # seconds it waits once connecting has failed, until connecting succeeds
CONNECT_TIMEOUT = 3  # seconds to establish one connection (libpq's connect_timeout, at least 2)

_unreachable: str | None = None  # why the last attempt to connect failed; None once one works


def unreachable_reason() -> str | None:
    """Why the database could not be reached at the last attempt, or None if it could."""
    return _unreachable


class WatchedConnection(psycopg.Connection[Any]):
    """The pool's connections: each attempt to open one tells the pool how long to wait."""

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        try:
            connection = super().connect(conninfo, **kwargs)
        except psycopg.OperationalError as error:
            # libpq spreads its message over several lines; logs and /readyz want one.
            _unreachable_because(" ".join(str(error).split()) or type(error).__name__)
            raise
        _reachable()
        return connection


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
        pool = _pool()
        if pool is not None:
            pool.check()
        raise


def _reachable() -> None:
    global _unreachable  # noqa: PLW0603
    _unreachable = None
    pool = _pool()
    if pool is not None:
        pool.timeout = POOL_TIMEOUT  # read by the pool at each request for a connection


def _unreachable_because(reason: str) -> None:
    global _unreachable  # noqa: PLW0603
    _unreachable = reason
    pool = _pool()
    if pool is None:
        return
    pool.timeout = OUTAGE_TIMEOUT
    # The callers already waiting were promised POOL_TIMEOUT, and psycopg_pool offers no public
    # way to cut that short: its queue is read under its lock, and each waiting client is
    # failed the way the pool's own close() fails them.
    with pool._lock:
        waiting = list(pool._waiting)
    for client in waiting:
        client.fail(psycopg.OperationalError(f"The database is unreachable: {reason}"))


class PoolInternalsChanged(RuntimeError):
    """psycopg_pool no longer has the private parts that tell waiting callers of an outage."""


def check_pool_internals() -> None:
    """Fail at once, naming what is missing, when psycopg_pool lacks what an outage needs.

    ``_unreachable_because`` reads the pool's ``_lock`` and ``_waiting`` and calls
    ``WaitingClient.fail``, none of them public. pyproject.toml bounds psycopg-pool to the
    releases that have them; this check makes a release outside the bound fail at start-up
    rather than in the middle of an outage.
    """
    probe: ConnectionPool[Any] = ConnectionPool("", open=False)
    missing = [
        name
        for name, present in (
            ("ConnectionPool._lock", hasattr(getattr(probe, "_lock", None), "__enter__")),
            ("ConnectionPool._waiting", hasattr(getattr(probe, "_waiting", None), "__iter__")),
            ("WaitingClient.fail", callable(getattr(WaitingClient, "fail", None))),
        )
        if not present
    ]
    if missing:
        raise PoolInternalsChanged(
            f"psycopg-pool {version('psycopg-pool')} has no {', '.join(missing)}, which "
            "config/database.py uses to fail waiting callers once the database is unreachable; "
            "install a release that pyproject.toml allows (uv sync --locked)."
        )


def _pool() -> ConnectionPool[Any] | None:
    from django.db import DEFAULT_DB_ALIAS, connections

    pool: ConnectionPool[Any] | None = getattr(connections[DEFAULT_DB_ALIAS], "pool", None)
    return pool


check_pool_internals()
