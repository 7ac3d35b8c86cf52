"""The webhook job on the runner, and runner processes sharing it."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from typing import Any, cast

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from events.models import Event
from tests.processes import Service, timesheets_locked
from tests.webhooks.receiver import Receiver
from webhooks.jobs import deliver_webhooks
from webhooks.models import Delivery
from webhooks.services import subscription_create
from worker.exceptions import JobDeferred
from worker.registry import discover


def test_the_job_is_declared_with_the_interval_setting(settings: Any) -> None:
    settings.WEBHOOKS_INTERVAL_SECONDS = 0.25
    (deliver,) = [job for job in discover() if job.name == "deliver_webhooks"]
    assert deliver.interval == 0.25
    assert deliver.is_async, "requests wait on the event loop, not in the database thread"


@pytest.mark.django_db(transaction=True)
async def test_a_run_kept_waiting_by_other_writers_is_deferred_not_failed() -> None:
    with (
        timesheets_locked(table="webhooks_delivery"),
        pytest.raises(JobDeferred, match="busy with other writers"),
    ):
        await cast(Coroutine[Any, Any, int], deliver_webhooks(timezone.now()))


EVENTS = 200
PROCESSES = 2


@pytest.fixture
def workers() -> Iterator[list[Service]]:
    env = {
        "WEBHOOKS_INTERVAL_SECONDS": "0.1",
        "WEBHOOKS_BATCH_SIZE": "10",
        "WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.1/32",
    }
    started = [Service("runworker", env=env) for _ in range(PROCESSES)]
    yield started
    for worker in started:
        worker.stop()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_runner_processes_deliver_every_event_once(
    receiver: Receiver, alice: User, workers: list[Service]
) -> None:
    receiver.answer = lambda n: (200, 0.005)
    subscription_create(owner=alice, url=receiver.url())
    now = timezone.now()
    Event.objects.bulk_create(
        # Recent: the processes' own job prunes old events.
        Event(type=Event.Type.PROJECT_CREATED, owner=alice, occurred_at=now, data={"n": n})
        for n in range(EVENTS)
    )
    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        if Delivery.objects.filter(delivered_at__isnull=False).count() == EVENTS:
            break
        time.sleep(0.1)
    received = Counter(receiver.ids())
    assert len(received) == EVENTS
    assert {count for count in received.values()} == {1}
    for worker in workers:
        assert worker.events("webhooks_sent"), "both processes took part"
