from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 60.0  # seconds: migrations and collectstatic run before the server listens
STOP_TIMEOUT = 10.0  # seconds to shut down gracefully before the process is killed
REQUEST_TIMEOUT = 5.0  # seconds


@dataclass(frozen=True)
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def wait_until_healthy(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"serve exited with {server.process.returncode} before answering:\n"
                f"{server.output()}"
            )
        try:
            if get(f"{server.url}/healthz")[0] == 200:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.2)
    pytest.fail(f"serve did not answer /healthz within {STARTUP_TIMEOUT:g} s:\n{server.output()}")


@pytest.fixture
def production_server(tmp_path: Path) -> Iterator[Server]:
    """``manage.py serve`` with DEBUG off, on its own SQLite file, stopped after the test."""
    port = free_port()
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'serve.sqlite3'}",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "STATIC_ROOT": str(tmp_path / "static"),
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = Server(url=f"http://127.0.0.1:{port}", process=process, log=log)
    try:
        wait_until_healthy(server)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_with_debug_off_under_uvicorn_the_admin_is_fully_styled(
    production_server: Server,
) -> None:
    status, _, body = get(f"{production_server.url}/admin/login/")
    assert status == 200, production_server.output()
    stylesheet = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', body.decode())
    # A hashed name means the manifest storage of production is in use, not the finders.
    assert stylesheet is not None, body.decode()[:3000]

    status, content_type, css = get(production_server.url + stylesheet.group(1))

    assert status == 200, production_server.output()
    assert content_type.startswith("text/css")
    assert b"body" in css
