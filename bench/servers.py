"""The servers under load, each a process group of its own, and the CPU they use.

- ``asgi``: uvicorn serving ``config.asgi`` with ``--lifespan on``, httptools and uvloop, as the
  container image does;
  the runner runs on its event loop.
- ``wsgi``: gunicorn's threaded worker serving the sync views of ``bench.sync_views``; when
  the accrual is to run as well, a ``manage.py runworker`` process beside it does it, as a
  sync deployment would run its periodic jobs outside the web process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 60.0  # seconds for a server to answer /healthz
STOP_TIMEOUT = 20.0  # seconds to stop gracefully before the group is killed
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # units of utime and stime in /proc/<pid>/stat


class ServerFailed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces: split after its closing one.
    return text[text.rindex(")") + 2 :].split()


def process_tree_cpu_seconds(root: int) -> float:
    """User and system CPU of ``root`` and every process below it, threads included."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                parents[int(entry.name)] = int(fields[1])
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    ticks = 0
    for pid in tree:
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLOCK_TICKS


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds summed over every core since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    total = sum(values[:8])  # without guest time, which is already counted in user
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path = field(init=False)
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        handle, path = tempfile.mkstemp(prefix=f"bench_{self.name}_", suffix=".log")
        os.close(handle)
        self.log = Path(path)
        with self.log.open("wb") as output:
            self.popen = subprocess.Popen(  # noqa: S603  (our interpreter, fixed arguments)
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stop() ends its workers too
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def cpu_seconds(self) -> float:
        return process_tree_cpu_seconds(self.pid)

    def wait_until_answering(self, url: str) -> None:
        give_up = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < give_up:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise ServerFailed(f"{self.name} exited at start:\n{self.output()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise ServerFailed(f"{self.name} did not answer {url}:\n{self.output()}")

    def stop(self) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(STOP_TIMEOUT)
        self.log.unlink(missing_ok=True)


def asgi(*, port: int, env: dict[str, str]) -> Process:
    return Process(
        name="uvicorn",
        argv=[
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "on",
            "--http",
            "config.server:HeaderTimeoutProtocol",
            "--loop",
            "uvloop",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
    )


def wsgi(*, port: int, threads: int, env: dict[str, str]) -> Process:
    return Process(
        name="gunicorn",
        argv=[
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--worker-class",
            "gthread",
            "--threads",
            str(threads),
            "--log-level",
            "warning",
        ],
        env={**env, "DJANGO_SETTINGS_MODULE": "bench.sync_settings"},
    )


def worker(*, env: dict[str, str]) -> Process:
    return Process(name="runworker", argv=[sys.executable, "manage.py", "runworker"], env=env)
