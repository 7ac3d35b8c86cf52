"""``python -m bench.stream``: Server-Sent Events subscribers on one uvicorn process.

Opens up to ``--subscribers`` streams of ``GET /api/events`` on one server (as ``serve`` runs
it: uvicorn, httptools, uvloop, the lifespan), all following the same person, and measures at
each level:

- the server's resident memory per subscriber: (RSS with the level's streams - RSS with none)
  / streams, after one event has reached them all;
- the fan-out: for each of ``--trials`` stops (``POST /api/timesheets/<id>/stop``), the time
  from sending the request to each subscriber reading the ``timesheet.stopped`` event; p50 and
  p99 over every subscriber of every trial, and the time to the last one.

The load generator (this process, asyncio on uvloop) runs on the same machine as the server
and the database: its own time to read 10,000 sockets is part of what is measured. The
database is one of its own, created and dropped as ``python -m bench`` does. Writes a JSON
results file and prints a Markdown section.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import django
import uvloop
from django.apps import apps

from bench.database import BenchDatabase
from bench.main import _close_connections, _configure, _numbers, _positive, _say, _server
from bench.stats import percentile, rounded

CONNECT_CONCURRENCY = 200  # streams being opened at once
EVENT_TIMEOUT = 120.0  # seconds for an event to reach every subscriber before the run fails
SETTLE_SECONDS = 2.0  # after a level's streams are open, before measuring memory
HOLD_WAIT = 5.0  # seconds a stream opened on gunicorn has to be answered to count as held


def _status(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise LookupError(name)


def raise_file_limit(wanted: int) -> int:
    """Raise this process's (and so its children's) open-file limit as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class Fanout:
    """Who has seen the awaited event, and when."""

    awaited: bytes = b""
    expected: int = 0
    arrivals: list[float] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def arm(self, event_type: str, expected: int) -> None:
        self.awaited = f"event: {event_type}".encode()
        self.expected = expected
        self.arrivals = []
        self.done.clear()

    def saw(self, data: bytes) -> None:
        if self.awaited and self.awaited in data:
            self.arrivals.append(time.perf_counter())
            if len(self.arrivals) >= self.expected:
                self.done.set()


async def subscriber(
    port: int, token: str, fanout: Fanout, opening: asyncio.Semaphore, after: int
) -> None:
    async with opening:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        # Resuming from the last event: what commits while it subscribes is not missed.
        writer.write(
            f"GET /api/events?last_event_id={after} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        status = await reader.readline()
        if not status.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"a stream was answered {status!r}")
    # Whole reads rather than lines: the generator shares the server's two cores. An event's
    # type is near its start, and an event (under 1 KiB) fits one read.
    while data := await reader.read(1 << 16):
        fanout.saw(data)
    raise RuntimeError("a stream ended")


class Api:
    """The requests that make events, each on a connection of its own (opened beforehand)."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token

    async def post(self, path: str) -> float:
        """Send the request; the instant it went out."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            request = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {self.token}\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            sent = time.perf_counter()
            writer.write(request)
            status = await reader.readline()
            if not status.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"{path} answered {status!r}")
        finally:
            writer.close()
        return sent


async def held(*, port: int, token: str, attempts: int) -> dict[str, Any]:
    """Open ``attempts`` streams at once; count those answered within ``HOLD_WAIT``, then
    whether the server still answers ``/healthz`` while they are open."""
    writers: list[asyncio.StreamWriter] = []

    async def answered(request: bytes) -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
        writer.write(request)
        try:
            status = await asyncio.wait_for(reader.readline(), HOLD_WAIT)
        except TimeoutError:
            return False
        return status.startswith(b"HTTP/1.1 200")

    stream = (
        f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
    try:
        streams = await asyncio.gather(*(answered(stream) for _ in range(attempts)))
        probe = await answered(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    finally:
        for writer in writers:
            writer.close()
    return {"attempted": attempts, "held": sum(streams), "healthz_answered": probe}


async def _event(api: Api, fanout: Fanout, path: str, event_type: str, expected: int) -> float:
    fanout.arm(event_type, expected)
    sent = await api.post(path)
    await asyncio.wait_for(fanout.done.wait(), EVENT_TIMEOUT)
    return sent


async def measure(
    *,
    port: int,
    token: str,
    server_pid: int,
    timesheet_id: int,
    levels: list[int],
    trials: int,
) -> list[dict[str, Any]]:
    from events.models import Event

    fanout = Fanout()
    api = Api(port, token)
    opening = asyncio.Semaphore(CONNECT_CONCURRENCY)
    start = f"/api/timesheets/{timesheet_id}/start"
    stop = f"/api/timesheets/{timesheet_id}/stop"
    streams: list[asyncio.Task[None]] = []
    rss_before = _status(server_pid, "VmRSS")
    threads_before = _status(server_pid, "Threads")
    results = []
    try:
        for level in levels:
            started = time.perf_counter()
            after = await Event.objects.order_by("-id").values_list("id", flat=True).afirst()
            streams += [
                asyncio.ensure_future(subscriber(port, token, fanout, opening, after or 0))
                for _ in range(level - len(streams))
            ]
            # Every stream has subscribed once a start has reached them all.
            await _event(api, fanout, start, "timesheet.started", level)
            failed = [task for task in streams if task.done()]
            if failed:
                failed[0].result()
            opened_seconds = time.perf_counter() - started
            await asyncio.sleep(SETTLE_SECONDS)
            rss = _status(server_pid, "VmRSS")
            threads = _status(server_pid, "Threads")
            latencies: list[float] = []
            to_last: list[float] = []
            for trial in range(trials):
                if trial:
                    await _event(
                        api,
                        fanout,
                        f"/api/timesheets/{timesheet_id}/start",
                        "timesheet.started",
                        level,
                    )
                sent = await _event(api, fanout, stop, "timesheet.stopped", level)
                arrivals = [(arrival - sent) * 1000 for arrival in fanout.arrivals]
                latencies += arrivals
                to_last.append(max(arrivals))
            row = {
                "subscribers": level,
                "open_seconds": rounded(opened_seconds, 2),
                "rss_mib": rounded(rss / 1024, 1),
                "rss_per_subscriber_kib": rounded((rss - rss_before) / level, 1),
                "threads": threads,
                "threads_before": threads_before,
                "fanout_p50_ms": rounded(percentile(latencies, 0.5), 1),
                "fanout_p99_ms": rounded(percentile(latencies, 0.99), 1),
                "to_last_median_ms": rounded(sorted(to_last)[len(to_last) // 2], 1),
                "to_last_max_ms": rounded(max(to_last), 1),
                "trials": trials,
            }
            _say(f"stream {row}")
            results.append(row)
    finally:
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
    return [{**row, "rss_before_mib": rounded(rss_before / 1024, 1)} for row in results]


def plot_name(vendor: str) -> str:
    return f"benchmarks-stream-{vendor}.png"


def plot(results: dict[str, Any], path: Path) -> None:
    """Fan-out times and memory per subscriber, by number of subscribers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = results["levels"]
    subscribers = [row["subscribers"] for row in levels]
    figure, (times, memory) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label, marker in (
        ("fanout_p50_ms", "p50", "o"),
        ("fanout_p99_ms", "p99", "s"),
        ("to_last_max_ms", "to the last (max)", "^"),
    ):
        times.plot(subscribers, [row[key] for row in levels], marker=marker, label=label)
    times.axhline(500, color="black", linestyle=":", label="p99 target")
    times.set_ylabel("from the stop request to the event (ms)")
    memory.plot(subscribers, [row["rss_per_subscriber_kib"] for row in levels], marker="o")
    memory.axhline(50, color="black", linestyle=":", label="target")
    memory.set_ylabel("server RSS per subscriber (KiB)")
    memory.set_ylim(bottom=0)
    for axes in (times, memory):
        axes.set_xlabel("subscribers on one uvicorn process")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(f"Server-Sent Events; {results['machine']['database']}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        f"- Date: {machine['date']}; {machine['cpus']} cores ({machine['cpu_model']}), memory "
        f"{machine['memory_gib']} GiB, {machine['os']}; {machine['database']}; Python "
        f"{machine['python']}",
        f"- Code: commit {machine['code'].get('commit')}",
        f"- Open-file limit raised to {results['file_limit']}; server RSS with no stream "
        f"{results['levels'][0]['rss_before_mib']} MiB",
        f"- Load average (1, 5, 15 min) at start {machine['load_average_at_start']}, at end "
        f"{results['load_average_at_end']}",
        f"- Command: `{results['command']}`",
        "",
        "| Subscribers | Opened in | Server RSS | RSS per subscriber | Server threads | "
        "Fan-out p50 | Fan-out p99 | To the last (median / max) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["levels"]:
        lines.append(
            f"| {row['subscribers']:,} | {row['open_seconds']} s | {row['rss_mib']} MiB | "
            f"{row['rss_per_subscriber_kib']} KiB | {row['threads']} | "
            f"{row['fanout_p50_ms']} ms | {row['fanout_p99_ms']} ms | "
            f"{row['to_last_median_ms']} / {row['to_last_max_ms']} ms |"
        )
    gunicorn = results.get("gunicorn")
    if gunicorn:
        lines += [
            "",
            f"gunicorn gthread (`--threads {gunicorn['threads']}`, the same streams as a sync "
            f"view): {gunicorn['attempted']} streams opened at once, {gunicorn['held']} "
            f"answered within {gunicorn['wait_seconds']:g} s; `/healthz` answered meanwhile: "
            f"{'yes' if gunicorn['healthz_answered'] else 'no'}.",
        ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.stream", description=__doc__)
    p.add_argument("--database", type=_server, default="sqlite", help="as python -m bench's")
    p.add_argument(
        "--subscribers", type=_numbers, default=[1000, 5000, 10000], help="1000,5000,10000"
    )
    p.add_argument("--trials", type=_positive, default=10, help="stops per level (10)")
    p.add_argument("--out", type=Path, default=Path("docs"), help="where the JSON goes (docs)")
    p.add_argument(
        "--gunicorn-threads",
        type=_positive,
        default=16,
        help="threads of the gunicorn gthread stack the streams are also opened on (16)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(arguments)
    file_limit = raise_file_limit(max(args.subscribers) * 2 + 1000)
    database = BenchDatabase.create(args.database)
    _say(f"database {database.name}")
    server = None
    try:
        _configure(database.url)
        django.setup()
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from django.db import connection
        from django.utils import timezone

        from bench import machine, servers
        from timesheets.services import api_token_create, project_create, timesheet_create

        call_command("migrate", interactive=False, verbosity=0)
        now = timezone.now()
        user = User.objects.create_user(username="follower")
        token = api_token_create(user=user, name="bench", expires_at=None, now=now).secret
        project = project_create(code="bench", designation="Benchmark", now=now)
        timesheet = timesheet_create(owner=user, project=project, description="", now=now)
        vendor = connection.vendor
        described = machine.describe()
        _close_connections()

        port = servers.free_port()
        server = servers.asgi(port=port, env=dict(os.environ))
        server.start()
        server.wait_until_answering(f"http://127.0.0.1:{port}/healthz")
        levels = asyncio.run(
            measure(
                port=port,
                token=token,
                server_pid=server.pid,
                timesheet_id=timesheet.pk,
                levels=args.subscribers,
                trials=args.trials,
            ),
            loop_factory=uvloop.new_event_loop,
        )
        server.stop()
        server = None
        # The same streams as sync views under gunicorn gthread: one thread each.
        server = servers.wsgi(port=port, threads=args.gunicorn_threads, env=dict(os.environ))
        server.start()
        server.wait_until_answering(f"http://127.0.0.1:{port}/healthz")
        gunicorn = asyncio.run(
            held(port=port, token=token, attempts=args.gunicorn_threads * 4),
            loop_factory=uvloop.new_event_loop,
        )
        _say(f"gunicorn {gunicorn}")
    finally:
        if server is not None:
            server.stop()
        if apps.ready:
            _close_connections()
        database.drop()
    results = {
        "vendor": vendor,
        "machine": described,
        "file_limit": file_limit,
        "command": shlex.join(["uv", "run", "python", "-m", "bench.stream", *arguments]),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "levels": levels,
        "gunicorn": {"threads": args.gunicorn_threads, "wait_seconds": HOLD_WAIT, **gunicorn},
        "load_average_at_end": machine.load_average(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"benchmarks-stream-{vendor}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    plot(results, args.out / plot_name(vendor))
    _say(f"results in {path}, plot in {plot_name(vendor)}")
    sys.stdout.write(markdown(results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
