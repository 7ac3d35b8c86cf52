"""The webhooks' periodic job, found and run by the worker."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from webhooks.delivery import webhook_deliver
from worker.exceptions import deferred_while_busy
from worker.registry import job


def _interval() -> float:
    return float(settings.WEBHOOKS_INTERVAL_SECONDS)


@job(interval=_interval)
async def deliver_webhooks(now: datetime) -> int:
    """On the event loop: requests wait there concurrently; the database calls go to the
    runner's own thread."""
    with deferred_while_busy():
        return await webhook_deliver()
