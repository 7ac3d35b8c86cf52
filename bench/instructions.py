"""``python -m bench.instructions``: CPU instructions per API request, counted by callgrind.

Wall-clock numbers on a shared two-core machine move with every neighbour; instruction counts
do not. Each server runs under ``valgrind --tool=callgrind``, the whole process (every thread,
the event loop, the driver, the C code below), and answers the same fixed sequence: ``cycles``
times start, get, stop, get of one timesheet with a bearer token, over one keep-alive
connection. The counters are zeroed after ``warmup`` cycles and dumped after the measured ones.

Stacks:

- ``asgi``: the project as deployed, uvicorn (httptools, uvloop) serving ``config.asgi``;
- ``wsgi``: the same operations as plain sync views (``bench.sync_views``) under gunicorn's
  threaded worker, Django's full middleware stack included;
- ``floor``: uvicorn serving ``floor_app`` below: per request, the token lookup and the
  timesheet's row with the raw driver, answered as JSON. No Django, no ORM, no thread hop,
  and no write: what any Python server over this database pays at least.

The periodic-job runner is off in every stack (``WORKER_AUTOSTART=false``): it would add its
own work to the count. Results go to stdout as JSON and, with ``--out``, as a section at the
end of ``benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import django

from bench import servers
from bench.database import BenchDatabase, BenchDatabaseError, vendor_of
from bench.main import _configure, _without_password

STACKS = ("asgi", "wsgi", "floor")
STARTUP_TIMEOUT = 900.0  # seconds: Django starts some 50 times slower under valgrind
CONTROL_TIMEOUT = 120.0  # seconds for callgrind_control to be answered
OPERATIONS = ("start", "get", "stop", "get")  # one cycle
SECTION = "## Instructions per request (callgrind)"
END_MARK = "<!-- end of the section written by bench.instructions -->"
FLOOR_APP = "bench.instructions:floor_app"


def _uvicorn(app: str, port: int) -> list[str]:
    return [
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--lifespan",
        "on" if app != FLOOR_APP else "off",
        "--http",
        "config.server:HeaderTimeoutProtocol" if app != FLOOR_APP else "httptools",
        "--loop",
        "uvloop",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def _argv(stack: str, port: int) -> list[str]:
    if stack == "asgi":
        return _uvicorn("config.asgi:application", port)
    if stack == "floor":
        return _uvicorn(FLOOR_APP, port)
    wsgi = servers.wsgi(port=port, threads=1, env={})
    # One thread serves the one connection; no worker timeout: valgrind is slow to answer.
    return [*wsgi.argv[1:], "--timeout", "0"]


@contextlib.contextmanager
def _under_callgrind(stack: str, port: int, env: dict[str, str], out: Path) -> Iterator[int]:
    argv = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}/callgrind.{stack}.%p",
        *(["--dump-before=accept4"] if stack == "wsgi" else []),
        sys.executable,
        *_argv(stack, port),
    ]
    if stack == "wsgi":
        env = {**env, "DJANGO_SETTINGS_MODULE": "bench.sync_settings"}
    process = servers.Process(name=f"callgrind_{stack}", argv=argv, env=env)
    process.start()
    try:
        give_up = time.monotonic() + STARTUP_TIMEOUT
        while not _answers(port):
            assert process.popen is not None
            if process.popen.poll() is not None:
                raise servers.ServerFailed(f"{stack} exited at start:\n{process.output()}")
            if time.monotonic() > give_up:
                raise servers.ServerFailed(f"{stack} did not answer:\n{process.output()}")
            time.sleep(1)
        yield process.pid
    finally:
        process.stop()


def _answers(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _callgrind_pids(group: int) -> list[int]:
    """Every process of the group (gunicorn's arbiter and its worker) that runs callgrind."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[2]) == group and b"callgrind" in command:
            found.append(int(entry.name))
    return sorted(found)


def _control(option: str, pid: int) -> str:
    result = subprocess.run(  # noqa: S603  (valgrind's own tool, fixed arguments)
        ["callgrind_control", option, str(pid)],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=CONTROL_TIMEOUT,
        check=True,
    )
    return result.stdout


def _dumped_instructions(out: Path, stack: str, pid: int) -> int:
    """Instructions in the last dump callgrind wrote for ``pid`` (since the counters' zero)."""
    dumps = sorted(
        out.glob(f"callgrind.{stack}.{pid}.*"), key=lambda path: int(path.suffix.lstrip("."))
    )
    if not dumps:
        raise servers.ServerFailed(f"callgrind wrote no dump for {stack} ({pid})")
    for line in dumps[-1].read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise servers.ServerFailed(f"no totals in {dumps[-1]}")


def _cycles(port: int, token: str, timesheet_id: int, count: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {"Authorization": f"Bearer {token}", "Content-Length": "0"}
    try:
        for _ in range(count):
            for operation in OPERATIONS:
                path = f"/api/timesheets/{timesheet_id}"
                method = "GET" if operation == "get" else "POST"
                if method == "POST":
                    path += f"/{operation}"
                connection.request(method, path, headers=headers)
                response = connection.getresponse()
                body = response.read()
                if response.status != 200:
                    raise servers.ServerFailed(f"{method} {path}: {response.status} {body[:300]!r}")
    finally:
        connection.close()


def measure_stack(
    stack: str,
    *,
    env: dict[str, str],
    token: str,
    timesheet_id: int,
    cycles: int,
    warmup: int,
    keep: Path | None = None,
) -> dict[str, Any]:
    if keep is None:
        out = Path(tempfile.mkdtemp(prefix=f"callgrind_{stack}_"))
    else:
        out = keep / stack
        out.mkdir(parents=True, exist_ok=True)
    port = servers.free_port()
    try:
        with _under_callgrind(stack, port, env, out) as group:
            _cycles(port, token, timesheet_id, warmup)
            pids = _callgrind_pids(group)
            # callgrind_control reaches the process valgrind started, not one it forked
            # (gunicorn's worker): that one dumps its counts each time it accepts a connection.
            controlled = [pid for pid in pids if pid == group]
            for pid in controlled:
                _control("--zero", pid)
            started = time.monotonic()
            _cycles(port, token, timesheet_id, cycles)  # on a connection of their own
            seconds = time.monotonic() - started
            if len(controlled) < len(pids):
                _answers(port)  # a new connection: the forked worker dumps the cycles' counts
            for pid in controlled:
                _control("--dump", pid)
            instructions = sum(_dumped_instructions(out, stack, pid) for pid in pids)
    finally:
        if keep is None:
            shutil.rmtree(out, ignore_errors=True)
    requests = cycles * len(OPERATIONS)
    sys.stderr.write(f"{stack}: {instructions // requests:,} instructions per request\n")
    return {
        "stack": stack,
        "processes": len(pids),
        "requests": requests,
        "instructions": instructions,
        "instructions_per_request": round(instructions / requests),
        "seconds_under_valgrind": round(seconds, 1),
    }


# The floor -----------------------------------------------------------------------------------

type Scope = dict[str, Any]
type Receive = Callable[[], Awaitable[Mapping[str, Any]]]
type Send = Callable[[Mapping[str, Any]], Awaitable[None]]

_CALLER_SQL = (
    "SELECT t.user_id FROM timesheets_apitoken t JOIN auth_user u ON u.id = t.user_id "
    "WHERE t.digest = {p} AND u.is_active"
)
_TIMESHEET_SQL = (
    "SELECT id, status, imputed, accrued_until, running_since FROM timesheets_timesheet "
    "WHERE id = {p} AND owner_id = {p}"
)
_PATH = re.compile(r"/api/timesheets/(\d+)(?:/(start|stop))?")
_floor_database: Any = None


def _floor_connection() -> Any:
    global _floor_database  # noqa: PLW0603
    if _floor_database is None:
        url = os.environ["DATABASE_URL"]
        if url.startswith("sqlite:///"):
            import sqlite3

            _floor_database = ("?", sqlite3.connect(url.removeprefix("sqlite:///")))
        else:
            import psycopg

            _floor_database = ("%s", psycopg.connect(url, autocommit=True))
    return _floor_database


def _floor_answer(authorization: str, path: str) -> tuple[int, bytes]:
    placeholder, connection = _floor_connection()
    match = _PATH.fullmatch(path)
    scheme, _, secret = authorization.partition(" ")
    if path == "/healthz":
        return 200, b'{"status": "ok"}'
    if match is None or scheme.lower() != "bearer":
        return 404, b'{"detail": "Not found."}'
    digest = hashlib.sha256(secret.encode()).hexdigest()
    user = connection.execute(_CALLER_SQL.format(p=placeholder), (digest,)).fetchone()
    if user is None:
        return 401, b'{"detail": "Authentication required."}'
    row = connection.execute(
        _TIMESHEET_SQL.format(p=placeholder), (int(match.group(1)), user[0])
    ).fetchone()
    if row is None:
        return 404, b'{"detail": "Not found."}'
    keys = ("id", "status", "imputed", "accrued_until", "running_since")
    return 200, json.dumps(dict(zip(keys, row, strict=True)), default=str).encode()


async def floor_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Auth and the row by the raw driver, straight on the event loop."""
    assert scope["type"] == "http"
    while (await receive()).get("more_body"):
        pass
    headers = dict(scope["headers"])
    status, body = _floor_answer(headers.get(b"authorization", b"").decode(), scope["path"])
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


# The run -------------------------------------------------------------------------------------


def _section(results: dict[str, Any]) -> str:
    by_stack = {row["stack"]: row for row in results["stacks"]}
    asgi, wsgi = by_stack["asgi"], by_stack["wsgi"]
    floor = by_stack.get("floor")
    machine = results["machine"]
    lines = [
        SECTION,
        "",
        f"Measured {results['finished_at']} on {results['vendor']}: "
        f"{results['cycles']} cycles of start, get, stop, get ({asgi['requests']} requests) "
        f"after {results['warmup']} warm-up cycles, one keep-alive connection, "
        "the whole server process counted by callgrind (every thread, C code included).",
        "",
        "```",
        results["command"],
        "```",
        "",
        "| Stack | Instructions per request | Ratio to gunicorn |",
        "| --- | ---: | ---: |",
    ]
    labels = {
        "asgi": "uvicorn + config.asgi (the API)",
        "wsgi": "gunicorn gthread + sync views",
        "floor": "floor: uvicorn + raw driver, no Django",
    }
    for row in results["stacks"]:
        ratio = row["instructions_per_request"] / wsgi["instructions_per_request"]
        lines.append(
            f"| {labels[row['stack']]} | {row['instructions_per_request']:,} | {ratio:.2f}x |"
        )
    lines += [
        "",
        f"Machine: {machine.get('cpu_model')}, {machine.get('cpus')} CPUs, "
        f"Python {machine.get('python')}, valgrind {results['valgrind']}.",
    ]
    if floor is not None:
        distance = asgi["instructions_per_request"] - floor["instructions_per_request"]
        lines.append(
            f"The API is {distance:,} instructions per request above the floor "
            f"({asgi['instructions_per_request'] / floor['instructions_per_request']:.1f}x)."
        )
    return "\n".join(lines) + "\n"


def write_section(document: Path, section: str) -> None:
    """Put the generated section at the end of the document, or in place of the one there
    (what follows its end marker, the prose about it, stays)."""
    text = document.read_text() if document.exists() else ""
    generated = section.rstrip("\n") + "\n" + END_MARK + "\n"
    if SECTION in text:
        head = text[: text.index(SECTION)]
        tail = text[text.index(END_MARK) + len(END_MARK) + 1 :] if END_MARK in text else ""
        document.write_text(head + generated + tail)
    else:
        document.write_text((text.rstrip("\n") + "\n\n" if text else "") + generated)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    p.add_argument("--database", default="sqlite", help="sqlite, or postgres://user@host:port")
    p.add_argument("--cycles", type=int, default=25, help="measured cycles of 4 requests (25)")
    p.add_argument("--warmup", type=int, default=5, help="cycles before counting (5)")
    p.add_argument("--stacks", default=",".join(STACKS), help="asgi,wsgi,floor")
    p.add_argument(
        "--out", type=Path, default=None, help="write the section into OUT/benchmarks.md"
    )
    p.add_argument("--keep", type=Path, default=None, help="keep callgrind's files in KEEP/<stack>")
    return p


def _valgrind_version() -> str:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    return subprocess.run(
        ["valgrind", "--version"],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(arguments)
    stacks = [name for name in args.stacks.split(",") if name]
    if unknown := set(stacks) - set(STACKS):
        raise SystemExit(f"unknown stacks: {', '.join(sorted(unknown))}")
    valgrind = _valgrind_version()
    vendor_of(args.database)
    try:
        database = BenchDatabase.create(args.database)
    except BenchDatabaseError as error:
        sys.stderr.write(f"{error}\n")
        return 1
    try:
        _configure(database.url)
        os.environ["WORKER_AUTOSTART"] = "false"
        django.setup()
        from django.core.management import call_command
        from django.db import connection
        from django.utils import timezone

        from bench import machine
        from bench.web import create_people
        from timesheets.services import project_create

        call_command("migrate", interactive=False, verbosity=0)
        project = project_create(code="bench", designation="Benchmark", now=timezone.now())
        (person,) = create_people(1, project)
        vendor = connection.vendor
        connection.close()
        rows = [
            measure_stack(
                stack,
                env=dict(os.environ),
                token=person.token,
                timesheet_id=person.timesheet_id,
                cycles=args.cycles,
                warmup=args.warmup,
                keep=args.keep,
            )
            for stack in stacks
        ]

        described = machine.describe()
    finally:
        from django.apps import apps

        if apps.ready:
            from bench.main import _close_connections

            _close_connections()
        database.drop()
    results = {
        "vendor": vendor,
        "cycles": args.cycles,
        "warmup": args.warmup,
        "valgrind": valgrind,
        "machine": described,
        "stacks": rows,
        "command": _without_password(
            shlex.join(["uv", "run", "python", "-m", "bench.instructions", *arguments])
        ),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    sys.stdout.write(json.dumps(results, indent=1) + "\n")
    if args.out is not None and {"asgi", "wsgi"} <= set(stacks):
        write_section(args.out / "benchmarks.md", _section(results))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    raise SystemExit(main())
