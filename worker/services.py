"""Writes of the worker's own records."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models.functions import Now

from worker.models import RunnerProcess

FORGET_AFTER = timedelta(days=1)  # a process silent this long is gone: its record goes too


def runner_process_beat(*, host: str, started_at: datetime, status: dict[str, Any]) -> None:
    """Record a runner's status as of now (the database's clock), and forget long-gone ones."""
    pid = int(status["pid"])
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
