"""The timesheets' periodic jobs, found and run by the worker.

The runner hands each run its own clock reading; these jobs ignore it, because the time model
reads one clock of its own (``timesheets.clock``): the database server's on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from timesheets.policy import max_run_length
from timesheets.services import (
    timesheet_aaccrue_running,
    timesheet_accrue_running,
    timesheet_stop_forgotten,
)
from worker.exceptions import deferred_while_busy
from worker.registry import job

FORGOTTEN_INTERVAL = 60.0  # seconds; runs are capped at the limit, so lateness costs nothing


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
    with deferred_while_busy():
        return timesheet_accrue_running()


@job(
    name="accrue_running_timesheets",
    interval=_tick,
    run_at_shutdown=True,
    enabled=lambda: _orm_mode_is("native"),
)
async def accrue_running_timesheets_natively(now: datetime) -> int:
    """Driven from the event loop, which is free between two batches."""
    with deferred_while_busy():
        return await timesheet_aaccrue_running()


@job(interval=FORGOTTEN_INTERVAL, enabled=lambda: max_run_length() is not None)
def stop_forgotten_timesheets(now: datetime) -> int:
    with deferred_while_busy():
        return timesheet_stop_forgotten()
