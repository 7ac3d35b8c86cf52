"""Reads of the worker's own records: which runners are alive, and how they are."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models.functions import Now

from worker.models import RunnerProcess

HEARTBEAT_INTERVAL = 5.0  # seconds between two heartbeats of a runner
SILENT_AFTER = timedelta(seconds=3 * HEARTBEAT_INTERVAL)  # three beats missed: not answering
SHOWN_FOR = timedelta(hours=1)  # how long a process that stopped beating is still listed


@dataclass(frozen=True)
class RunnerHealth:
    host: str
    pid: int
    started_at: datetime
    seen_at: datetime
    silent_for: timedelta
    state: str  # healthy, failing, stopped or silent
    jobs: list[dict[str, Any]]
    loop_lag_ms: float | None


def _state(status: dict[str, Any], silent_for: timedelta) -> str:
    if not status.get("running") or status.get("stopping"):
        return "stopped"
    if silent_for > SILENT_AFTER:
        return "silent"
    if any(job.get("consecutive_failures") for job in status.get("jobs", [])):
        return "failing"
    return "healthy"


def runner_health_list() -> list[RunnerHealth]:
    """Every runner heard from within the last hour, judged on the database's clock."""
    rows = RunnerProcess.objects.annotate(read_at=Now()).filter(seen_at__gte=Now() - SHOWN_FOR)
    health = []
    for row in rows:
        silent_for = max(timedelta(0), row.read_at - row.seen_at)
        health.append(
            RunnerHealth(
                host=row.host,
                pid=row.pid,
                started_at=row.started_at,
                seen_at=row.seen_at,
                silent_for=silent_for,
                state=_state(row.status, silent_for),
                jobs=list(row.status.get("jobs", [])),
                loop_lag_ms=row.status.get("loop_lag_ms"),
            )
        )
    return health
