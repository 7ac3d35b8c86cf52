"""Events older than the retention period are deleted by a periodic job."""

from __future__ import annotations

from typing import Any

import pytest

from events import jobs
from events.jobs import event_prune
from events.models import Event
from tests.conftest import at
from tests.processes import timesheets_locked
from worker.exceptions import JobDeferred
from worker.registry import discover

pytestmark = pytest.mark.django_db


def make(hours_ago: float, *, now: float) -> Event:
    return Event.objects.create(
        type=Event.Type.PROJECT_CREATED,
        occurred_at=at(now - hours_ago * 3600),
        data={},
    )


def test_what_is_older_than_the_retention_goes(settings: Any, monkeypatch: Any) -> None:
    settings.EVENTS_RETENTION_HOURS = 24
    monkeypatch.setattr(jobs, "PRUNE_BATCH", 2)
    now = 10 * 24 * 3600
    old = [make(hours, now=now) for hours in (24.001, 30, 48, 200, 1000)]
    kept = [make(hours, now=now) for hours in (0, 1, 23.999, 24)]

    assert event_prune(now=at(now)) == len(old)

    assert list(Event.objects.order_by("id")) == kept
    assert event_prune(now=at(now)) == 0


def test_the_job_is_declared() -> None:
    (prune,) = [job for job in discover() if job.name == "prune_events"]
    assert prune.interval == jobs.PRUNE_INTERVAL


@pytest.mark.django_db(transaction=True)
def test_a_prune_kept_waiting_by_other_writers_is_deferred_and_deletes_nothing(
    settings: Any,
) -> None:
    settings.EVENTS_RETENTION_HOURS = 1
    old = make(48, now=10 * 24 * 3600)

    with (
        timesheets_locked(table="events_event"),
        pytest.raises(JobDeferred, match="busy with other writers"),
    ):
        jobs.prune_events(at(0))

    assert Event.objects.filter(pk=old.pk).exists()
