"""``manage.py wait_for_database``: bounded, and one readable line when the database is away."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from tests.processes import ROOT, free_port

PASSWORD = "correct-horse-battery-staple"  # must never be printed
UNREACHABLE = f"postgres://timesheets:{PASSWORD}@127.0.0.1:1/timesheets"


def wait_for_database(
    database_url: str, *arguments: str, timeout: float = 30.0
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the command in its own process; return its result and how long it took (s)."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "manage.py", "wait_for_database", *arguments],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    return result, time.monotonic() - started


def plain_lines(output: str) -> list[str]:
    """The lines that are not JSON log events."""
    lines = []
    for line in output.splitlines():
        try:
            json.loads(line)
        except ValueError:
            if line.strip():
                lines.append(line)
    return lines


def events(output: str, name: str) -> list[dict[str, object]]:
    found = []
    for line in output.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == name:
            found.append(event)
    return found


@pytest.mark.django_db(transaction=True)
def test_returns_at_once_when_the_database_answers() -> None:
    started = time.monotonic()
    call_command("wait_for_database", "--timeout", "10")
    assert time.monotonic() - started < 5


def test_an_unreachable_database_fails_with_one_clear_line() -> None:
    result, took = wait_for_database(UNREACHABLE, "--timeout", "1")

    assert result.returncode == 1
    assert took < 10, "bounded by --timeout, plus the time Django takes to start"
    output = result.stdout + result.stderr
    (message,) = plain_lines(output)
    assert message.startswith(
        "CommandError: Database at 127.0.0.1:1/timesheets not reachable after 1 s: "
    )
    assert "Connection refused" in message
    assert message.endswith("Check DATABASE_URL and that the database is running.")
    assert "Traceback" not in output
    assert PASSWORD not in output
    (waiting,) = events(output, "database_waiting")
    assert waiting["database"] == "127.0.0.1:1/timesheets"


def test_a_zero_timeout_tries_once() -> None:
    result, took = wait_for_database(UNREACHABLE, "--timeout", "0")
    assert result.returncode == 1
    assert took < 10
    assert "not reachable after 0 s" in result.stderr


def test_sqlite_has_no_server_to_wait_for(tmp_path: Path) -> None:
    database = tmp_path / "db.sqlite3"
    result, took = wait_for_database(f"sqlite:///{database}", "--timeout", "30")
    assert (result.returncode, result.stderr) == (0, "")
    assert took < 10
    assert not database.exists(), "nothing to wait for, and no empty file left behind"


def test_sqlite_with_nowhere_to_write_fails_with_one_clear_line(tmp_path: Path) -> None:
    database = tmp_path / "missing" / "db.sqlite3"

    result, took = wait_for_database(f"sqlite:///{database}", "--timeout", "30")

    assert result.returncode == 1
    assert took < 10
    (message,) = plain_lines(result.stdout + result.stderr)
    assert message == (
        f"CommandError: The SQLite database {database} cannot be written: its folder "
        f"{database.parent} does not exist. Set DATABASE_URL to a PostgreSQL server, or to a "
        "SQLite file on a writable volume (in the image: sqlite:////data/db.sqlite3 with a "
        "volume at /data)."
    )
    assert not database.parent.exists()


@pytest.mark.parametrize("timeout", ["-1", "nan", "inf"])
def test_a_timeout_that_is_not_a_duration_is_refused(timeout: str) -> None:
    with pytest.raises(CommandError, match="--timeout must be a number of seconds"):
        call_command("wait_for_database", "--timeout", timeout)


class Forwarder:
    """A TCP port that relays to PostgreSQL once opened: a database that comes up late."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port = port
        self.target = target
        self.listener: socket.socket | None = None

    def open(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self.target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with source, sink:
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
            except OSError:
                pass  # the other direction closed both sockets


@pytest.fixture
def late_database() -> Iterator[Forwarder]:
    settings = connection.settings_dict
    forwarder = Forwarder(
        free_port(), (settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432))
    )
    yield forwarder
    forwarder.close()


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_waits_for_a_database_that_comes_up_late(late_database: Forwarder) -> None:
    settings = connection.settings_dict
    url = (
        f"postgres://{settings['USER'] or 'postgres'}@127.0.0.1:{late_database.port}/"
        f"{settings['NAME']}"
    )
    with subprocess.Popen(
        [sys.executable, "manage.py", "wait_for_database", "--timeout", "30"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url, "LOG_FORMAT": "json"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as command:
        assert command.stdout is not None
        first = command.stdout.readline()
        try:
            assert json.loads(first)["event"] == "database_waiting", first
            late_database.open()
            output = first + command.stdout.read()
            assert command.wait(20) == 0, output
        finally:
            command.kill()
    (available,) = events(output, "database_available")
    assert isinstance(available["waited_s"], float)
    assert available["waited_s"] > 0
