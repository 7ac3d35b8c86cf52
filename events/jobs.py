"""The events' periodic job: forget what is older than the retention period."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings

from events.models import Event
from timesheets import clock
from timesheets.backends import backend
from timesheets.expressions import Shift, duration
from timesheets.services import JOB_LOCK_TIMEOUT, JOB_STATEMENT_TIMEOUT
from worker.exceptions import deferred_while_busy
from worker.registry import job

PRUNE_INTERVAL = 300.0  # seconds
PRUNE_BATCH = 10_000  # events deleted per transaction: a short lock on the table's end


def event_prune(*, now: datetime | None = None) -> int:
    """Delete the events older than ``EVENTS_RETENTION_HOURS``; return how many."""
    cutoff = Shift(clock.current(now), duration(-timedelta(hours=settings.EVENTS_RETENTION_HOURS)))
    deleted = 0
    while True:
        # Under the job's timeouts: a prune kept waiting by other writers gives up and the next
        # one does the work, rather than holding a graceful stop.
        with backend().job_transaction(
            lock_timeout=JOB_LOCK_TIMEOUT, statement_timeout=JOB_STATEMENT_TIMEOUT
        ):
            ids = Event.objects.filter(occurred_at__lt=cutoff).order_by("id").values("id")
            count, _ = Event.objects.filter(id__in=ids[:PRUNE_BATCH]).delete()
        deleted += count
        if count < PRUNE_BATCH:
            return deleted


@job(interval=PRUNE_INTERVAL)
def prune_events(now: datetime) -> int:
    with deferred_while_busy():
        return event_prune()
