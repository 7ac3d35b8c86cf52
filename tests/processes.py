"""Running manage.py commands as separate processes against the test database."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """A DATABASE_URL naming the database the tests use right now."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or "postgres"
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings['NAME']}"


def is_accrual(event: dict[str, Any]) -> bool:
    """Whether a logged job event is the accrual's (every runner also beats, every 5 s)."""
    return str(event.get("job", "")).startswith("accrue")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Service:
    """A ``manage.py`` command in its own process, logging JSON to a file we can read."""

    def __init__(self, *arguments: str, env: dict[str, str] | None = None) -> None:
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115  (closed in stop())
            mode="w+", suffix=".log", delete=False
        )
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", *arguments],
            cwd=ROOT,
            env={
                **os.environ,
                "DATABASE_URL": test_database_url(),
                "LOG_FORMAT": "json",
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            },
            stdout=self.log,
            stderr=subprocess.STDOUT,
            # Its own process group, so that stop() also ends what it started (uvicorn workers).
            start_new_session=True,
        )

    @property
    def output(self) -> str:
        return Path(self.log.name).read_text()

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in self.output.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and (name is None or event.get("event") == name):
                found.append(event)
        return found

    def wait_for(
        self,
        name: str,
        *,
        where: Callable[[dict[str, Any]], bool] = lambda event: True,
        timeout: float = 20.0,
    ) -> dict[str, Any]:
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            for event in self.events(name):
                if where(event):
                    return event
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {name!r} event; the process said:\n{self.output}")

    def wait_for_http(self, url: str, *, timeout: float = 30.0) -> None:
        """Wait until ``url`` answers at all (any status): the server is listening."""
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            try:
                with urllib.request.urlopen(url, timeout=5):
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        raise AssertionError(f"{url} never answered; the process said:\n{self.output}")

    def send(self, number: signal.Signals) -> None:
        self.process.send_signal(number)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


@contextlib.contextmanager
def serving(env: dict[str, str] | None = None) -> Iterator[str]:
    """``serve`` on a free port of this host, answering: yields its base URL, stops it after."""
    port = free_port()
    service = Service("serve", "--port", str(port), "--no-migrate", env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        service.wait_for_http(f"{base}/healthz")
        yield base
    finally:
        service.stop()


@contextlib.contextmanager
def timesheets_locked(table: str = "timesheets_timesheet") -> Iterator[None]:
    """Another connection holds what the accrual needs: the timesheets table (PostgreSQL; or
    the table named), the database's write lock (SQLite)."""
    if connection.vendor == "postgresql":
        import psycopg

        with psycopg.connect(test_database_url()) as other:
            other.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            yield
            other.rollback()
        return
    writer = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        yield
        writer.execute("ROLLBACK")
    finally:
        writer.close()
