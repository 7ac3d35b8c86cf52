"""One measured run, in a process of its own: ``python -m bench.child SPEC RESULT``.

SPEC and RESULT are JSON files. A fresh process per run keeps the runs apart (no allocator or
garbage left by the previous one) and lets its peak memory be read from the kernel. Every
variant first runs once on nothing (connection open, code paths warm), as a periodic job in a
long-lived process would be; then the measured run moves every running timesheet.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import django

VARIANTS = ("seed", "sync_to_async", "native", "raw")
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # before every watermark: an accrual moving nothing


def _one_batch() -> Any:
    """The job's statement once, moving nothing: the connection opened, the code paths warm.

    One batch only: a whole pass, even moving nothing, would lock every row once and leave
    the measured run pages the floor's warm-up does not.
    """
    from timesheets.services import _accrue_range

    return _accrue_range(after_id=0, last_id=1, now=EPOCH)


def _accrual_functions(
    variant: str, save_limit: int | None
) -> tuple[Callable[[], Awaitable[Any]], Callable[[datetime], Awaitable[dict[str, Any]]]]:
    """The variant's warm-up, and its run at ``now``, both on the event loop."""
    from asgiref.sync import sync_to_async
    from django.db import connection

    from bench.seed_pattern import accrue_row_by_row
    from timesheets.models import Timesheet
    from timesheets.services import timesheet_aaccrue_running, timesheet_accrue_running

    if variant == "sync_to_async":

        async def warm_up() -> Any:
            return await sync_to_async(_one_batch)()

        async def run(now: datetime) -> dict[str, Any]:
            return {"rows": await sync_to_async(timesheet_accrue_running)(now=now)}

    elif variant == "native":

        async def warm_up() -> Any:
            return await sync_to_async(_one_batch)()

        async def run(now: datetime) -> dict[str, Any]:
            return {"rows": await timesheet_aaccrue_running(now=now)}

    elif variant == "seed":

        def first() -> Any:
            connection.ensure_connection()
            return Timesheet.objects.filter(pk=0).first()

        async def warm_up() -> Any:
            return await sync_to_async(first)()

        async def run(now: datetime) -> dict[str, Any]:
            loop = await sync_to_async(accrue_row_by_row)(save_limit=save_limit)
            return {
                "rows": loop.saved,
                "running": loop.running,
                "fetch_seconds": loop.fetch_seconds,
                "save_seconds": loop.save_seconds,
            }

    else:
        raise ValueError(f"no variant {variant!r} on the event loop")
    return warm_up, run


def _extrapolate(outcome: dict[str, Any], seconds: float) -> dict[str, Any]:
    """A row-by-row loop cut short: the rows it did not save, at the pace of those it did."""
    saved, running = outcome.get("rows", 0), outcome.get("running", 0)
    if "running" not in outcome or saved >= running or saved == 0:
        return {"seconds": seconds, "extrapolated": False}
    per_row = outcome["save_seconds"] / saved
    return {
        "seconds": seconds + per_row * (running - saved),
        "measured_seconds": seconds,
        "extrapolated": True,
    }


async def _accrual_on_loop(spec: dict[str, Any]) -> dict[str, Any]:
    from django.utils import timezone

    from bench.memory import PeakMeter

    warm_up, run = _accrual_functions(spec["variant"], spec.get("save_limit"))
    await warm_up()
    meter = PeakMeter()
    meter.start()
    started = time.perf_counter()
    outcome = await run(timezone.now())
    seconds = time.perf_counter() - started
    return {
        **outcome,
        **_extrapolate(outcome, seconds),
        "memory_mib": meter.growth_mib(),
        "memory_method": meter.method,
    }


def _accrual_raw() -> dict[str, Any]:
    import psycopg
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from bench import floor
    from bench.memory import PeakMeter
    from timesheets.policy import max_run_length

    limit = max_run_length()
    meter = PeakMeter()
    if connection.vendor == "postgresql":
        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as pg:
            pg.execute("SELECT 1")
            floor.accrue_postgresql(pg, now=EPOCH, limit=limit)
            meter.start()
            started = time.perf_counter()
            rows = floor.accrue_postgresql(pg, now=timezone.now(), limit=limit)
            seconds = time.perf_counter() - started
    else:
        name = settings.DATABASES["default"]["NAME"]
        lite = sqlite3.connect(name, timeout=20, isolation_level=None)
        try:
            lite.execute("PRAGMA synchronous=NORMAL")  # as the project's connections are set
            floor.accrue_sqlite(lite, now=EPOCH, limit=limit)
            meter.start()
            started = time.perf_counter()
            rows = floor.accrue_sqlite(lite, now=timezone.now(), limit=limit)
            seconds = time.perf_counter() - started
        finally:
            lite.close()
    return {
        "rows": rows,
        "seconds": seconds,
        "extrapolated": False,
        "memory_mib": meter.growth_mib(),
        "memory_method": meter.method,
    }


async def _lag_on_loop(spec: dict[str, Any]) -> dict[str, Any]:
    from django.utils import timezone

    from bench.probe import LagProbe

    warm_up, run = _accrual_functions(spec["variant"], spec.get("save_limit"))
    await warm_up()
    probe = LagProbe(interval=spec["interval"])
    probe.start()
    await asyncio.sleep(spec["idle"])
    started = time.perf_counter()
    outcome = await run(timezone.now())
    finished = time.perf_counter()
    await asyncio.sleep(spec["tail"])
    await probe.stop()
    idle = [s.lag for s in probe.samples if s.woke_at < started]
    during = [s.lag for s in probe.during(started, finished)]
    return {
        "rows": outcome["rows"],
        "seconds": finished - started,
        "idle_lags": idle,
        "lags": during,
        # Over time, relative to the start of the accrual: (seconds, lag in seconds).
        "timeline": [(s.woke_at - started, s.lag) for s in probe.samples],
    }


def _accrue_single() -> int:
    """The old behaviour: every running row in one UPDATE, every row lock held to its end."""
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from bench import floor
    from timesheets.policy import max_run_length

    if connection.vendor == "postgresql":
        import psycopg

        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as pg:
            return floor.accrue_postgresql(pg, now=timezone.now(), limit=max_run_length())
    lite = sqlite3.connect(settings.DATABASES["default"]["NAME"], timeout=60, isolation_level=None)
    try:
        return floor.accrue_sqlite(lite, now=timezone.now(), limit=max_run_length())
    finally:
        lite.close()


def _accrue_batched() -> int:
    from django.db import connection

    from timesheets.services import timesheet_accrue_running

    try:
        return timesheet_accrue_running()
    finally:
        connection.close()  # this thread's connection


def _stops(spec: dict[str, Any]) -> dict[str, Any]:
    """Stop timers one after another, each timed, while an accrual runs in another thread.

    The first id is stopped before the accrual, untimed (connection open, code paths warm).
    The next stop is sent ``interval`` seconds after the previous one was, or at once if that
    one took longer; stops go on until the accrual has committed, and one at least is timed,
    so that a run too short for any still measures one.
    """
    from timesheets.services import timesheet_stop

    ids: list[int] = spec["ids"]
    timesheet_stop(timesheet_id=ids[0])
    accrue = _accrue_single if spec["variant"] == "single" else _accrue_batched
    outcome: dict[str, Any] = {}
    started = threading.Event()

    def accrual() -> None:
        try:
            started.set()
            begun = time.perf_counter()
            outcome["rows"] = accrue()
            outcome["seconds"] = time.perf_counter() - begun
        except Exception as error:  # noqa: BLE001  (raised again in the main thread)
            outcome["error"] = repr(error)
        finally:
            started.set()

    thread = threading.Thread(target=accrual, name="accrual")
    thread.start()
    started.wait()
    latencies: list[float] = []
    stopped: list[int] = []
    next_at = time.perf_counter()
    for timesheet_id in ids[1:]:
        if latencies and not thread.is_alive():
            break
        time.sleep(max(0.0, next_at - time.perf_counter()))
        sent = time.perf_counter()
        next_at = sent + spec["interval"]
        timesheet_stop(timesheet_id=timesheet_id)
        latencies.append(time.perf_counter() - sent)
        stopped.append(timesheet_id)
    thread.join()
    if "error" in outcome:
        raise RuntimeError(f"the accrual failed: {outcome['error']}")
    return {
        "rows": outcome["rows"],
        "seconds": outcome["seconds"],
        "latencies": latencies,
        "stopped": [ids[0], *stopped],
        "ran_out": len(stopped) == len(ids) - 1,
    }


def _pass(spec: dict[str, Any]) -> dict[str, Any]:
    """One full accrual pass, started at the wall-clock instant ``start_at`` like its peers."""
    from django.db import DatabaseError, connection

    from timesheets.services import timesheet_accrue_running

    _one_batch()
    time.sleep(max(0.0, spec["start_at"] - time.time()))
    started = time.time()
    error = None
    rows = 0
    try:
        rows = timesheet_accrue_running()
    except DatabaseError as failure:  # counted: a deadlock or a lock timeout would show here
        error = f"{type(failure).__name__}: {failure}"
    finished = time.time()
    connection.close()
    return {"rows": rows, "started": started, "finished": finished, "error": error}


def main(argv: list[str]) -> int:
    spec_path, result_path = Path(argv[1]), Path(argv[2])
    spec: dict[str, Any] = json.loads(spec_path.read_text())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    if spec["task"] == "accrual" and spec["variant"] == "raw":
        result = _accrual_raw()
    elif spec["task"] == "accrual":
        result = asyncio.run(_accrual_on_loop(spec))
    elif spec["task"] == "lag":
        result = asyncio.run(_lag_on_loop(spec))
    elif spec["task"] == "stops":
        result = _stops(spec)
    elif spec["task"] == "pass":
        result = _pass(spec)
    else:
        raise ValueError(f"unknown task {spec['task']!r}")
    result_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
