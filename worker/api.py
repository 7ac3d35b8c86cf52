"""HTTP endpoints of the worker, for holders of ``timesheets.run_worker``: see the runner's
status, make sure it runs.

``POST /worker/start`` is an async view that starts the runner on the loop serving the request
when that loop is the server's own, and in a thread of its own otherwise; calling it again
changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.http import HttpRequest
from ninja import Field, Router, Schema
from ninja.errors import HttpError

from timesheets.permissions import RUN_WORKER, amay
from worker import process

router = Router(tags=["worker"])


class JobStatusOut(Schema):
    name: str
    interval_s: float
    runs: int
    failures: int
    consecutive_failures: int
    skipped: int = Field(description="Runs not made because an earlier one ran late or failed.")
    last_started_at: datetime | None
    last_finished_at: datetime | None
    last_duration_ms: float | None
    last_lag_ms: float | None = Field(description="How late the last run started.")
    last_rows: int | None = Field(description="Rows the last run affected.")
    last_error: str | None
    in_run: bool


class WorkerStatusOut(Schema):
    running: bool
    mode: str | None = Field(description="serving_loop, own_thread, or null when not started.")
    pid: int | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    loop_lag_ms: float | None = None
    loop_lag_max_ms: float | None = None
    jobs: list[JobStatusOut]


class Detail(Schema):
    detail: str


# Authentication reads the database, hence 503; any API request with a body over the limit
# is refused with 413.
ERRORS = {401: Detail, 403: Detail, 413: Detail, 503: Detail}


async def _require_run_worker(request: HttpRequest) -> None:
    user: User = request.auth  # type: ignore[attr-defined]
    if not await amay(user, RUN_WORKER):
        raise HttpError(403, "Seeing or starting the worker needs the run_worker permission.")


@router.get("/worker", response={200: WorkerStatusOut, **ERRORS})
async def worker_status(request: HttpRequest) -> dict[str, Any]:
    """This process's runner: running or not, and for each job its runs and failures."""
    await _require_run_worker(request)
    return process.status()


@router.post("/worker/start", response={200: WorkerStatusOut, **ERRORS})
async def worker_start(request: HttpRequest) -> dict[str, Any]:
    """Make sure this process's runner runs; starting it twice changes nothing."""
    await _require_run_worker(request)
    await process.aensure_running()
    return process.status()
