"""The timesheets' periodic jobs, found and run by the worker.

The runner hands each run its own clock reading; these jobs ignore it, because the time model
reads one clock of its own (``timesheets.clock``): the database server's on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from django.conf import settings

from timesheets.exceptions import DatabaseBusy
from timesheets.policy import max_run_length
from timesheets.services import (
    timesheet_aaccrue_running,
    timesheet_accrue_running,
    timesheet_stop_forgotten,
)
from worker.exceptions import JobDeferred
from worker.registry import job

FORGOTTEN_INTERVAL = 60.0  # seconds; runs are capped at the limit, so lateness costs nothing


@contextmanager
def _deferred_while_busy() -> Iterator[None]:
    # Other writers kept the database past the job's bound: the next run does the work (every
    # watermark moves from where it is), so it is deferred, not failed.
    try:
        yield
    except DatabaseBusy as busy:
        raise JobDeferred(str(busy)) from busy


def _tick() -> float:
    return float(settings.WORKER_TICK_SECONDS)


def _orm_mode_is(mode: str) -> bool:
    return bool(mode == settings.WORKER_ORM_MODE)


@job(
    name="accrue_running_timesheets",
    interval=_tick,
    run_at_shutdown=True,
    enabled=lambda: _orm_mode_is("sync_to_async"),
)
def accrue_running_timesheets(now: datetime) -> int:
    """Every batch in the runner's thread, called through ``sync_to_async`` once."""
    with _deferred_while_busy():
        return timesheet_accrue_running()


@job(
    name="accrue_running_timesheets",
    interval=_tick,
    run_at_shutdown=True,
    enabled=lambda: _orm_mode_is("native"),
)
async def accrue_running_timesheets_natively(now: datetime) -> int:
    """Driven from the event loop, which is free between two batches."""
    with _deferred_while_busy():
        return await timesheet_aaccrue_running()


@job(interval=FORGOTTEN_INTERVAL, enabled=lambda: max_run_length() is not None)
def stop_forgotten_timesheets(now: datetime) -> int:
    with _deferred_while_busy():
        return timesheet_stop_forgotten()
