"""The timesheets' periodic jobs, found and run by the worker."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from timesheets.policy import max_run_length
from timesheets.services import (
    timesheet_aaccrue_running,
    timesheet_accrue_running,
    timesheet_stop_forgotten,
)
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
    """The sync ORM, called by the runner through ``sync_to_async``."""
    return timesheet_accrue_running(now=now)


@job(
    name="accrue_running_timesheets",
    interval=_tick,
    run_at_shutdown=True,
    enabled=lambda: _orm_mode_is("native"),
)
async def accrue_running_timesheets_natively(now: datetime) -> int:
    """Django's native async ORM (``aupdate``)."""
    return await timesheet_aaccrue_running(now=now)


@job(interval=FORGOTTEN_INTERVAL, enabled=lambda: max_run_length() is not None)
def stop_forgotten_timesheets(now: datetime) -> int:
    return timesheet_stop_forgotten(now=now)
