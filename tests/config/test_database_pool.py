"""What config/database.py takes from psycopg_pool's private parts, checked without a server."""

from __future__ import annotations

import threading
import tomllib
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psycopg
import pytest
from packaging.requirements import Requirement
from psycopg_pool import ConnectionPool
from psycopg_pool.pool import WaitingClient

from config import database

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_release_has_what_an_outage_needs() -> None:
    database.check_pool_internals()


def test_the_release_is_bounded_in_the_project() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pool,) = [Requirement(d) for d in dependencies if Requirement(d).name == "psycopg-pool"]
    assert version("psycopg-pool") in pool.specifier
    assert "3.4.0" not in pool.specifier, "the next minor release must be checked first"


def test_a_release_without_fail_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(WaitingClient, "fail")

    with pytest.raises(database.PoolInternalsChanged) as refused:
        database.check_pool_internals()

    assert str(refused.value) == (
        f"psycopg-pool {version('psycopg-pool')} has no WaitingClient.fail, which "
        "config/database.py uses to fail waiting callers once the database is unreachable; "
        "install a release that pyproject.toml allows (uv sync --locked)."
    )


def test_a_release_without_its_queue_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    class Renamed(ConnectionPool[Any]):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._queue, self._mutex = self._waiting, self._lock
            del self._waiting, self._lock

    monkeypatch.setattr(database, "ConnectionPool", Renamed)

    with pytest.raises(database.PoolInternalsChanged, match=r"has no ConnectionPool\._lock, "):
        database.check_pool_internals()


def test_a_failed_attempt_to_connect_fails_the_callers_already_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool: ConnectionPool[Any] = ConnectionPool("", open=False, timeout=database.POOL_TIMEOUT)
    waiting: WaitingClient[Any] = WaitingClient()
    pool._waiting.append(waiting)
    monkeypatch.setattr(database, "_pool", lambda: pool)
    waits = threading.Event()

    def wait() -> Any:
        waits.set()
        return waiting.wait(database.POOL_TIMEOUT)

    with ThreadPoolExecutor(max_workers=1) as executor:
        caller = executor.submit(wait)
        waits.wait(5)
        try:
            database._unreachable_because("connection refused")
            with pytest.raises(psycopg.OperationalError) as told:
                caller.result(timeout=2)  # well before POOL_TIMEOUT
        finally:
            database._reachable()

    assert str(told.value) == "The database is unreachable: connection refused"
    assert pool.timeout == database.POOL_TIMEOUT, "restored once connecting works"
