"""``python -m bench``: run the benchmarks in a database of their own and write the results.

Writes ``benchmarks-<vendor>.json`` and the plots into ``--out``, and rewrites the generated
tables of ``benchmarks.md`` there if it exists (see ``bench.report``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import django
from django.apps import apps

from bench.database import BenchDatabase, BenchDatabaseError, vendor_of

SUITES = ("accrual", "lag", "http", "stops", "parallel")
POSTGRESQL_SIZES = "1000,10000,100000,1000000"
SQLITE_SIZES = "1000,10000,100000"  # a million rows is a PostgreSQL-only size
POSTGRESQL_LARGE = 1_000_000  # rows of the stops and parallel suites by default
SQLITE_LARGE = 100_000

# Settings every process of the run gets, whatever the caller's environment says, so that runs
# on different machines compare: no debug bookkeeping per query, quiet logs, default limits.
ENVIRONMENT = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "DEBUG": "false",
    "LOG_LEVEL": "WARNING",
    "LOG_FORMAT": "json",
    "TIMESHEETS_MAX_RUNNING_HOURS": "12",
    "TIMESHEETS_MAX_RUNNING_PER_USER": "1",
    "WORKER_AUTOSTART": "true",
    "WORKER_ORM_MODE": "sync_to_async",
}
UNSET = ("WORKER_TICK_SECONDS", "DATABASE_POOL_SIZE", "PROMETHEUS_MULTIPROC_DIR")


def _numbers(text: str) -> list[int]:
    try:
        values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of numbers"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} needs whole numbers of at least 1")
    return sorted(set(values))


def _count(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds")
    return value


def _interval(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("an interval must be longer than 0 s")
    return value


def _server(text: str) -> str:
    try:
        vendor_of(text)
    except BenchDatabaseError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _suites(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(chosen) - set(SUITES))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose among {', '.join(SUITES)}")
    return chosen


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--database",
        type=_server,
        default="sqlite",
        help="'sqlite' (a temporary file) or postgres://user@host:port: a database "
        "bench_run_<pid> is created on that server and dropped at the end (default: sqlite)",
    )
    p.add_argument("--out", type=Path, default=Path("docs"), help="where results go (docs)")
    p.add_argument(
        "--suite", type=_suites, default=list(SUITES), help="accrual,lag,http,stops,parallel"
    )
    p.add_argument(
        "--sizes",
        type=_numbers,
        help=f"accrual sizes N (PostgreSQL: {POSTGRESQL_SIZES}; SQLite: {SQLITE_SIZES})",
    )
    p.add_argument(
        "--repeat",
        type=_positive,
        default=3,
        help="runs of (b), (c), (d) per N, and of each lag mode (3)",
    )
    p.add_argument(
        "--seed-max-rows",
        type=_count,
        default=10_000,
        help="the row-by-row loop saves at most this many rows, above which its time is "
        "extrapolated; 0 leaves it out (10000)",
    )
    p.add_argument(
        "--lag-rows", type=_positive, default=100_000, help="rows of the lag runs (100000)"
    )
    p.add_argument("--http-seconds", type=_interval, default=30.0, help="per level (30)")
    p.add_argument("--http-warmup", type=_seconds, default=2.0, help="seconds per level (2)")
    p.add_argument(
        "--http-connections", type=_numbers, default=[1, 16, 64, 256], help="1,16,64,256"
    )
    p.add_argument(
        "--http-accrual-rows",
        type=_positive,
        default=100_000,
        help="running timesheets accrued during the 'accrual' scenario (100000)",
    )
    p.add_argument(
        "--http-accrual-tick",
        type=_interval,
        default=1.0,
        help="seconds between accruals in the 'accrual' scenario (1)",
    )
    p.add_argument(
        "--stops-rows",
        type=_positive,
        help="running timesheets accrued while stops are sent "
        "(PostgreSQL: 1000000; SQLite: 100000)",
    )
    p.add_argument(
        "--stops-interval", type=_interval, default=0.01, help="seconds between stops (0.01)"
    )
    p.add_argument(
        "--stops-max", type=_positive, default=1000, help="stops at most per accrual (1000)"
    )
    p.add_argument(
        "--parallel-rows",
        type=_positive,
        help="running timesheets the processes accrue (PostgreSQL: 1000000; SQLite: 100000)",
    )
    p.add_argument(
        "--parallel-processes",
        type=_numbers,
        default=[1, 2, 4],
        help="numbers of processes accruing at once (1,2,4)",
    )
    p.add_argument(
        "--http-rounds",
        type=_positive,
        default=1,
        help="times each stack is loaded, taking turns: uvicorn first in odd rounds (1)",
    )
    p.add_argument(
        "--gunicorn-threads",
        type=_positive,
        default=16,
        help="gunicorn's threads, and REQUEST_THREADS of uvicorn: requests at once (16)",
    )
    p.add_argument(
        "--pool-size", type=_positive, default=16, help="DATABASE_POOL_SIZE of both servers (16)"
    )
    return p


def _say(message: str) -> None:
    sys.stderr.write(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}\n")
    sys.stderr.flush()


def _without_password(text: str) -> str:
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


def _configure(url: str) -> None:
    for name in UNSET:
        os.environ.pop(name, None)
    os.environ.update(ENVIRONMENT)
    os.environ["DATABASE_URL"] = url
    os.environ["SECRET_KEY"] = secrets.token_urlsafe(50)


def _stop_on_sigterm(number: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + number)  # unwinds: servers are stopped, the database dropped


def _sharing(args: argparse.Namespace, n: int, results: dict[str, Any]) -> None:
    """The suites where accruals share rows: with other processes, and with stops."""
    from bench import parallel, rows, stops

    if "parallel" in args.suite and n == args.parallel_rows:
        passes = parallel.measure(
            n=rows.running_count(), processes=args.parallel_processes, repeat=args.repeat
        )
        for row in passes:
            _say(
                f"parallel P={row['processes']}: {row['seconds']:.4g} s, {row['rows']:,} "
                f"rows, {row['deadlocks']} deadlocks, {len(row['errors'])} errors"
            )
        results["parallel"] = {"results": passes}
    if "stops" in args.suite and n == args.stops_rows:
        modes = stops.measure(
            n=rows.running_count(),
            repeat=args.repeat,
            interval=args.stops_interval,
            max_stops=args.stops_max,
        )
        for mode in modes:
            _say(
                f"stops {mode['mode']}: {mode['stops']} stops, p99 {mode['p99_ms']} ms, "
                f"max {mode['max_ms']} ms, accrual {mode['seconds']:.4g} s"
            )
        results["stops"] = {"modes": modes}


def _run(args: argparse.Namespace, sizes: list[int]) -> dict[str, Any]:
    from django.db import connection
    from django.utils import timezone

    from bench import accrual, lag, machine, rows, web
    from timesheets.services import project_create

    results: dict[str, Any] = {
        "schema": 1,
        "vendor": connection.vendor,
        "machine": machine.describe(),
    }
    project = project_create(code="bench", designation="Benchmark", now=timezone.now())
    seed = args.seed_max_rows > 0
    measured: list[dict[str, Any]] = []
    table_sizes = set(sizes) if "accrual" in args.suite else set()
    if "lag" in args.suite:
        table_sizes.add(args.lag_rows)
    if "stops" in args.suite:
        table_sizes.add(args.stops_rows)
    if "parallel" in args.suite:
        table_sizes.add(args.parallel_rows)
    for n in sorted(table_sizes):
        added = rows.ensure_running(rows=n, project_id=project.pk, now=timezone.now())
        _say(f"{rows.running_count():,} running timesheets ({added:,} added)")
        if "accrual" in args.suite and n in sizes:
            found = accrual.measure(
                n=n, repeat=args.repeat, seed_max_rows=args.seed_max_rows, seed=seed
            )
            for row in found:
                _say(
                    f"accrual N={n:,} {row['label']}: {row['seconds']:.4g} s, {row['rows']:,} rows"
                )
            measured += found
        if "lag" in args.suite and n == args.lag_rows:
            modes = lag.measure(
                n=n, repeat=args.repeat, seed_max_rows=args.seed_max_rows, seed=seed
            )
            for mode in modes:
                _say(f"lag {mode['label']}: max {mode['lag_max_ms']} ms, p99 {mode['lag_p99_ms']}")
            results["lag"] = {"n": n, "modes": modes}
        # After the others: the stops leave the timers they stopped stopped.
        _sharing(args, n, results)
    if measured:
        results["accrual"] = {"results": measured, "ratios": accrual.ratios(measured)}
    if "http" in args.suite:
        _say("HTTP load")
        results["http"] = {
            "seconds": args.http_seconds,
            "warmup": args.http_warmup,
            "connections": args.http_connections,
            "gunicorn_threads": args.gunicorn_threads,
            "pool_size": args.pool_size,
            "accrual_rows": args.http_accrual_rows,
            "accrual_tick": args.http_accrual_tick,
            "rounds": args.http_rounds,
            "results": web.measure(
                project=project,
                seconds=args.http_seconds,
                warmup=args.http_warmup,
                levels=args.http_connections,
                threads=args.gunicorn_threads,
                pool_size=args.pool_size,
                accrual_rows=args.http_accrual_rows,
                accrual_tick=args.http_accrual_tick,
                rounds=args.http_rounds,
            ),
        }
    results["machine"]["load_average_at_end"] = machine.load_average()
    return results


def _close_connections() -> None:
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        connection.close()
        close_pool = getattr(connection, "close_pool", None)
        if close_pool is not None:
            close_pool()


def _carry_over(results: dict[str, Any], path: Path) -> None:
    """Keep the sections of the suites this run left out from the results file already there.

    Each kept section names the run it comes from, which the machine block shows.
    """
    if not path.exists():
        return
    earlier: dict[str, Any] = json.loads(path.read_text())
    if earlier.get("vendor") != results["vendor"]:
        return
    origins: dict[str, Any] = {}
    for suite in SUITES:
        if suite in results or not earlier.get(suite):
            continue
        results[suite] = earlier[suite]
        origins[suite] = (earlier.get("origins") or {}).get(suite) or {
            "command": earlier.get("command"),
            "finished_at": earlier.get("finished_at"),
            "code": (earlier.get("machine") or {}).get("code"),
        }
    if origins:
        results["origins"] = origins


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(arguments)
    vendor = vendor_of(args.database)
    sizes: list[int] = args.sizes or _numbers(
        POSTGRESQL_SIZES if vendor == "postgresql" else SQLITE_SIZES
    )
    large = POSTGRESQL_LARGE if vendor == "postgresql" else SQLITE_LARGE
    args.stops_rows = args.stops_rows or large
    args.parallel_rows = args.parallel_rows or large
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        database = BenchDatabase.create(args.database)
    except BenchDatabaseError as error:
        _say(str(error))
        return 1
    _say(f"database {database.name}")
    try:
        _configure(database.url)
        django.setup()
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)
        results = _run(args, sizes)
    finally:
        if apps.ready:
            _close_connections()
        database.drop()

    from bench import report, targets

    results["command"] = _without_password(
        shlex.join(["uv", "run", "python", "-m", "bench", *arguments])
    )
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["options"] = {
        key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()
    } | {"sizes": sizes, "database": _without_password(args.database)}
    path = args.out / report.results_name(vendor)
    _carry_over(results, path)
    results["targets"] = targets.evaluate(results)
    args.out.mkdir(parents=True, exist_ok=True)
    results["plots"] = report.plot(results, args.out)
    path.write_text(json.dumps(results, indent=1) + "\n")
    if report.update_document(args.out / report.DOCUMENT, report.blocks(results)):
        _say(f"tables rewritten in {args.out / report.DOCUMENT}")
    for target in results["targets"]:
        _say(f"target {target['name']}: {target['measured']} -> {target['met']}")
    _say(f"results in {path}")
    return 0
