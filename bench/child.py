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
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import django

VARIANTS = ("seed", "sync_to_async", "native", "raw")
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # before every watermark: an accrual moving nothing


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
            return await sync_to_async(timesheet_accrue_running)(now=EPOCH)

        async def run(now: datetime) -> dict[str, Any]:
            return {"rows": await sync_to_async(timesheet_accrue_running)(now=now)}

    elif variant == "native":

        async def warm_up() -> Any:
            return await timesheet_aaccrue_running(now=EPOCH)

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
    else:
        raise ValueError(f"unknown task {spec['task']!r}")
    result_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
