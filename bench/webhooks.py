"""``python -m bench.webhooks``: deliveries to slow receivers, concurrent against sequential.

Local receivers (uvicorn processes) answer every webhook after ``--delay`` seconds. The webhook
job's one run (fan-out, claim, concurrent sends, recording) delivers ``--deliveries`` of them;
then a sequential sync loop (one request after the other with a sync httpx client, each outcome
recorded before the next) sends a sample of ``--sample`` deliveries, and its total for all the
deliveries is extrapolated from the sample's mean. The result replaces the webhooks section at
the end of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import django
from django.apps import apps

from bench.database import BenchDatabase, BenchDatabaseError
from bench.main import (
    _close_connections,
    _configure,
    _positive,
    _say,
    _seconds,
    _server,
    _without_password,
)
from bench.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench:webhooks -->", "<!-- /bench:webhooks -->"
TARGET_SECONDS = 5.0  # the async run's total for 1,000 deliveries at 200 ms each
STARTUP_TIMEOUT = 30.0  # seconds for a receiver to accept connections
SUBSCRIPTIONS_PER_RECEIVER = 5


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__)
    p.add_argument(
        "--database",
        type=_server,
        action="append",
        help="'sqlite' or postgres://user@host:port, as for python -m bench; repeat it to "
        "measure on several (default: sqlite)",
    )
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # results file of one database
    p.add_argument("--deliveries", type=_positive, default=1000, help="(1000)")
    p.add_argument("--delay", type=_seconds, default=0.2, help="receivers' answer delay, s (0.2)")
    p.add_argument("--receivers", type=_positive, default=2, help="uvicorn processes (2)")
    p.add_argument(
        "--sample", type=_positive, default=20, help="deliveries the sync loop sends (20)"
    )
    p.add_argument("--concurrency", type=_positive, default=100, help="WEBHOOKS_CONCURRENCY (100)")
    p.add_argument("--repeat", type=_positive, default=3, help="runs of the job (3)")
    p.add_argument("--document", type=Path, default=DOCUMENT, help="docs/benchmarks.md")
    return p


@contextlib.contextmanager
def receivers(count: int, delay: float) -> Iterator[list[int]]:
    ports = [free_port() for _ in range(count)]
    started = [
        subprocess.Popen(  # noqa: S603  (fixed arguments)
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.webhook_receiver:app",
                "--host=127.0.0.1",
                f"--port={port}",
                "--no-access-log",
                "--log-level=warning",
                "--backlog=4096",
            ],
            cwd=ROOT,
            env={**os.environ, "BENCH_RECEIVER_DELAY": str(delay)},
        )
        for port in ports
    ]
    try:
        for port in ports:
            _wait_for(port)
        yield ports
    finally:
        for process in started:
            process.terminate()
        for process in started:
            process.wait(10)


def _wait_for(port: int) -> None:
    import socket

    give_up = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < give_up:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise SystemExit(f"the receiver on port {port} never listened")


def _events(count: int, owner_id: int) -> None:
    from django.utils import timezone

    from events.models import Event

    now = timezone.now()
    Event.objects.bulk_create(
        Event(type=Event.Type.PROJECT_CREATED, owner_id=owner_id, occurred_at=now, data={"n": n})
        for n in range(count)
    )


def measure_async(*, owner_id: int, events: int, expected: int, repeat: int) -> dict[str, Any]:
    from webhooks.delivery import webhook_deliver
    from webhooks.models import Delivery

    # A runner runs for long: the modules the first run imports are in place for the next.
    _events(1, owner_id)
    warm_up = asyncio.run(webhook_deliver())
    Delivery.objects.all().delete()
    _say(f"warm-up run: {warm_up} deliveries")
    runs = []
    for _ in range(repeat):
        _events(events, owner_id)
        started, cpu = time.perf_counter(), time.process_time()
        attempted = asyncio.run(webhook_deliver())
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
        delivered = Delivery.objects.filter(delivered_at__isnull=False).count()
        if (attempted, delivered) != (expected, expected):
            raise SystemExit(f"the async run attempted {attempted} and delivered {delivered}")
        Delivery.objects.all().delete()
        runs.append({"seconds": round(seconds, 3), "cpu_seconds": round(cpu_seconds, 3)})
        _say(f"async run: {runs[-1]}")
    median = statistics.median(run["seconds"] for run in runs)
    return {
        "deliveries": expected,
        "runs": runs,
        "median_seconds": round(median, 3),
        "best_seconds": min(run["seconds"] for run in runs),
        "median_cpu_seconds": round(statistics.median(run["cpu_seconds"] for run in runs), 3),
    }


def measure_sync(*, owner_id: int, events: int, sample: int, total: int) -> dict[str, Any]:
    """One delivery after the other, as a loop without concurrency would send them."""
    import httpx

    from webhooks.delivery import body, signed_headers
    from webhooks.models import Delivery
    from webhooks.services import (
        Outcome,
        delivery_claim,
        delivery_fan_out,
        delivery_record,
    )

    _events(events, owner_id)
    delivery_fan_out()
    claimed = delivery_claim(limit=sample)
    started = time.perf_counter()
    with httpx.Client(timeout=10, trust_env=False) as client:
        for item in claimed:
            payload = body(item)
            sent = time.perf_counter()
            response = client.post(
                item.url,
                content=payload,
                headers=signed_headers(item, payload, sent_at=datetime.now(UTC)),
            )
            outcome = Outcome(
                delivery_id=item.delivery_id,
                subscription_id=item.subscription_id,
                status_code=response.status_code,
                latency_ms=round((time.perf_counter() - sent) * 1000, 3),
                error="",
            )
            delivery_record(outcomes=[outcome])
    seconds = time.perf_counter() - started
    delivered = Delivery.objects.filter(
        pk__in=[item.delivery_id for item in claimed], delivered_at__isnull=False
    ).count()
    if delivered != len(claimed):
        raise SystemExit(f"the sync loop delivered {delivered} of {len(claimed)}")
    per_delivery = seconds / len(claimed)
    return {
        "sample": len(claimed),
        "sample_seconds": round(seconds, 3),
        "per_delivery_ms": round(per_delivery * 1000, 3),
        "extrapolated_seconds": round(per_delivery * total, 1),
    }


PLOT = "benchmarks-webhooks.png"  # next to the document


def plot(results: dict[str, Any], path: Path) -> None:
    """The job's median time against the sequential loop's, per database (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    figure, axes = plt.subplots(figsize=(7, 3.2))
    names = [run["machine"]["database"].split(" (")[0] for run in runs]
    positions = range(len(runs))
    job = [run["async"]["median_seconds"] for run in runs]
    loop = [run["sync"]["extrapolated_seconds"] for run in runs]
    axes.barh([p + 0.2 for p in positions], loop, 0.4, color="tab:orange", label="sequential")
    axes.barh([p - 0.2 for p in positions], job, 0.4, color="tab:blue", label="the webhook job")
    axes.axvline(TARGET_SECONDS, color="black", linestyle=":", label="target")
    axes.set_yticks(list(positions), names)
    axes.set_xscale("log")
    axes.set_xlabel(f"seconds for {results['deliveries']:,} deliveries (log scale)")
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def section(results: dict[str, Any]) -> str:
    runs = results["runs"]
    machine = runs[0]["machine"]
    lines = [
        "## Webhooks: concurrent deliveries against a sequential loop",
        "",
        f"![The webhook job against the sequential loop]({PLOT})",
        "",
        f"Command: `{results['command']}` ({results['finished_at']}).",
        f"Machine: {machine['cpus']} cores ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB, {machine['os']}, Python {machine['python']}; "
        "shared with other work, whose load the table gives.",
        "",
        f"{results['deliveries']:,} deliveries ({results['subscriptions']} subscriptions x "
        f"{results['events']} events) to {results['receivers']} local uvicorn receivers that "
        f"answer each request after {results['delay_ms']:g} ms. The job's run is measured "
        f"whole (fan-out, claim, sends with `WEBHOOKS_CONCURRENCY={results['concurrency']}`, "
        "recording), after a warm-up run, as in a runner that has been running; CPU is the "
        "sending process's own (the receivers run in their own processes). The "
        "sequential loop (a sync httpx client, each outcome recorded before the next request) "
        f"sends a sample of {results['sample']}; its total for all the deliveries is "
        "extrapolated from the sample's mean.",
        "",
        f"| Database | Load average at start | The webhook job: median of {results['repeat']} "
        f"runs (best; CPU) | Target ≤ {TARGET_SECONDS:g} s | Sequential loop, sample | "
        f"Sequential loop, {results['deliveries']:,} extrapolated | Speedup (median) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        job, loop = run["async"], run["sync"]
        met = "met" if job["median_seconds"] <= TARGET_SECONDS else "**missed**"
        load = " / ".join(str(v) for v in run["machine"]["load_average_at_start"])
        lines.append(
            f"| {run['machine']['database']} | {load} | {job['median_seconds']:.2f} s "
            f"({job['best_seconds']:.2f} s; CPU {job['median_cpu_seconds']:.2f} s) | {met} | "
            f"{loop['sample']} in {loop['sample_seconds']:.2f} s "
            f"({loop['per_delivery_ms']:.0f} ms each) | {loop['extrapolated_seconds']:.0f} s | "
            f"{loop['extrapolated_seconds'] / job['median_seconds']:.0f}x |"
        )
    lines += [
        "",
        "With a hundred requests in flight the 200 ms answers overlap, so the job's time is "
        "about ten rounds of 200 ms plus its CPU work; the sequential loop's is the receivers' "
        "delay times the number of deliveries. Two changes cut the job's time: workers "
        "share httpx clients of ten connections each (a single client with a "
        "hundred spent more CPU managing its pool than sending: about 25 s for this run), and "
        "outcomes are written with one prepared UPDATE per delivery (`bulk_update`'s CASE "
        "statements took about 2 s on SQLite).",
    ]
    missed = [run for run in runs if run["async"]["median_seconds"] > TARGET_SECONDS]
    for run in missed:
        job = run["async"]
        lines += [
            "",
            f"**Missed on {run['machine']['database']}**: a median of "
            f"{job['median_seconds']:.2f} s, of which the job's own CPU was "
            f"{job['median_cpu_seconds']:.2f} s and the receivers' waiting at least "
            f"{results['deliveries'] / results['concurrency'] * results['delay_ms'] / 1000:g} s; "
            "the rest is time spent waiting for a core, with the load average given in the "
            "table on 2 cores.",
        ]
    return "\n".join(lines)


def update_document(path: Path, text: str) -> None:
    """Replace the section between its markers, or add it at the end of the document."""
    block = f"{START}\n{text}\n{END}\n"
    current = path.read_text() if path.exists() else ""
    if START in current and END in current:
        before, rest = current.split(START, 1)
        after = rest.split(END, 1)[1].removeprefix("\n")
        path.write_text(before + block + after)
    else:
        path.write_text(current.rstrip("\n") + "\n\n" + block)


def measure(args: argparse.Namespace, server: str) -> dict[str, Any]:
    """Everything measured on one database, in this process (Django is set up for it)."""
    subscriptions = SUBSCRIPTIONS_PER_RECEIVER * args.receivers
    events = max(1, args.deliveries // subscriptions)
    database = BenchDatabase.create(server)
    try:
        _configure(database.url)
        os.environ["WEBHOOKS_ALLOWED_NETWORKS"] = "127.0.0.1/32"
        os.environ["WEBHOOKS_CONCURRENCY"] = str(args.concurrency)
        os.environ["WEBHOOKS_BATCH_SIZE"] = str(events * subscriptions)
        django.setup()
        from django.contrib.auth.models import User
        from django.core.management import call_command

        from bench import machine
        from webhooks.services import subscription_create

        call_command("migrate", interactive=False, verbosity=0)
        owner = User.objects.create_user(username="bench")
        results: dict[str, Any] = {"machine": machine.describe()}
        with receivers(args.receivers, args.delay) as ports:
            for port in ports:
                for n in range(SUBSCRIPTIONS_PER_RECEIVER):
                    subscription_create(owner=owner, url=f"http://127.0.0.1:{port}/hook/{n}")
            _say(f"{subscriptions} subscriptions x {events} events, {len(ports)} receivers")
            results["async"] = measure_async(
                owner_id=owner.pk,
                events=events,
                expected=events * subscriptions,
                repeat=args.repeat,
            )
            _say(f"async: {results['async']}")
            results["sync"] = measure_sync(
                owner_id=owner.pk,
                events=max(1, -(-args.sample // subscriptions)),
                sample=args.sample,
                total=events * subscriptions,
            )
            _say(f"sync: {results['sync']}")
        results["machine"]["load_average_at_end"] = machine.load_average()
        return results
    finally:
        if apps.ready:
            _close_connections()
        database.drop()


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(arguments)
    servers: list[str] = args.database or ["sqlite"]
    if args.child is not None:
        try:
            args.child.write_text(json.dumps(measure(args, servers[0])))
        except BenchDatabaseError as error:
            _say(str(error))
            return 1
        return 0
    runs = []
    for server in servers:
        # A process per database: Django is set up once per process.
        with tempfile.TemporaryDirectory() as directory:
            child = Path(directory) / "results.json"
            completed = subprocess.run(  # noqa: S603  (this same program)
                [
                    sys.executable,
                    "-m",
                    "bench.webhooks",
                    *_options(args),
                    "--database",
                    server,
                    "--child",
                    str(child),
                ],
                cwd=ROOT,
                check=False,
            )
            if completed.returncode != 0:
                return completed.returncode
            runs.append(json.loads(child.read_text()))
    subscriptions = SUBSCRIPTIONS_PER_RECEIVER * args.receivers
    events = max(1, args.deliveries // subscriptions)
    results = {
        "command": _without_password(
            shlex.join(["uv", "run", "python", "-m", "bench.webhooks", *arguments])
        ),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": runs,
        "deliveries": events * subscriptions,
        "subscriptions": subscriptions,
        "events": events,
        "receivers": args.receivers,
        "delay_ms": args.delay * 1000,
        "concurrency": args.concurrency,
        "sample": args.sample,
        "repeat": args.repeat,
    }
    plot(results, args.document.parent / PLOT)
    update_document(args.document, section(results))
    _say(f"section written at the end of {args.document}")
    return 0


def _options(args: argparse.Namespace) -> list[str]:
    """The measuring options, for a child process."""
    return [
        f"--deliveries={args.deliveries}",
        f"--delay={args.delay}",
        f"--receivers={args.receivers}",
        f"--sample={args.sample}",
        f"--concurrency={args.concurrency}",
        f"--repeat={args.repeat}",
    ]


if __name__ == "__main__":
    raise SystemExit(main())
