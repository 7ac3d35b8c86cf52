"""Writes of the worker's own records."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models.functions import Now

from timesheets.backends import backend
from worker.models import RunnerProcess

FORGET_AFTER = timedelta(days=1)  # a process silent this long is gone: its record goes too
# A beat waits for other writers no longer than this, so that it never holds up a stop; one
# given up on is the next beat's to make.
BEAT_LOCK_TIMEOUT = 1.0  # seconds
BEAT_STATEMENT_TIMEOUT = 2.0  # seconds


def runner_process_beat(*, host: str, started_at: datetime, status: dict[str, Any]) -> None:
    """Record a runner's status as of now (the database's clock), and forget long-gone ones."""
    pid = int(status["pid"])
    bounded = backend().job_transaction(
        lock_timeout=BEAT_LOCK_TIMEOUT, statement_timeout=BEAT_STATEMENT_TIMEOUT, durable=False
    )
    with bounded:
        _beat(host=host, pid=pid, started_at=started_at, status=status)


def _beat(*, host: str, pid: int, started_at: datetime, status: dict[str, Any]) -> None:
    RunnerProcess.objects.update_or_create(
        key=f"{host}:{pid}:{started_at.isoformat()}",
        defaults={
            "host": host,
            "pid": pid,
            "started_at": started_at,
            "seen_at": Now(),
            "status": status,
        },
    )
    RunnerProcess.objects.filter(seen_at__lt=Now() - FORGET_AFTER).delete()


runner_process_abeat = sync_to_async(runner_process_beat)
