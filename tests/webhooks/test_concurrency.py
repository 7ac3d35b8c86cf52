"""Runners in several threads, each with its own database connection, share the deliveries:
every event reaches its subscriber once."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import pytest
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.contrib.auth.models import User
from django.db import connection, transaction

from events.models import Event
from tests.conftest import T0
from tests.webhooks.receiver import receiving
from webhooks.delivery import webhook_deliver
from webhooks.models import Cursor, Delivery
from webhooks.services import delivery_fan_out, subscription_create

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = 150
RUNNERS = 4


def work_left() -> bool:
    cursor = Cursor.objects.filter(pk=1).first()
    fanned_out = cursor.last_event_id if cursor is not None else 0
    return (
        Event.objects.filter(id__gt=fanned_out).exists()
        or Delivery.objects.filter(delivered_at__isnull=True).exists()
    )


def close_connection() -> None:
    # Looked up here, in the runner's database thread: the event loop's thread has none.
    connection.close()


async def runner(barrier: threading.Barrier) -> None:
    # A context of its own, as the worker's runner has: its database calls go to a thread of
    # its own, so each runner uses its own connection.
    async with ThreadSensitiveContext():
        try:
            await asyncio.to_thread(barrier.wait)
            while await sync_to_async(work_left)():
                await webhook_deliver()
        finally:
            await sync_to_async(close_connection)()


def run_until_done(barrier: threading.Barrier, errors: list[BaseException]) -> None:
    try:
        asyncio.run(runner(barrier))
    except BaseException as error:  # noqa: BLE001  (reported by the test, in its own thread)
        errors.append(error)


def test_runners_in_several_threads_deliver_every_event_exactly_once(
    settings: Any, alice: User, bob: User
) -> None:
    # Small claims and a slow receiver, so that the runners' claims interleave.
    settings.WEBHOOKS_BATCH_SIZE = 7
    settings.WEBHOOKS_CONCURRENCY = 7
    # A request that timed out would be sent again, rightly: on a busy machine it must not.
    settings.WEBHOOKS_TIMEOUT_SECONDS = 30
    with receiving(lambda n: (200, 0.005)) as receiver:
        subscription_create(owner=alice, url=receiver.url("/alice"))
        subscription_create(owner=bob, url=receiver.url("/bob"))
        Event.objects.bulk_create(
            Event(
                type=Event.Type.TIMESHEET_CREATED,
                owner=alice if n % 3 else bob,
                occurred_at=T0,
                data={"n": n},
            )
            for n in range(EVENTS)
        )
        barrier = threading.Barrier(RUNNERS)
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=run_until_done, args=(barrier, errors)) for _ in range(RUNNERS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert not errors, errors
    received = Counter(
        (request.path, request.headers["webhook-id"]) for request in receiver.received
    )
    assert sum(received.values()) == EVENTS
    duplicates = {key: count for key, count in received.items() if count > 1}
    assert duplicates == {}
    assert Delivery.objects.filter(delivered_at__isnull=False, attempts=1).count() == EVENTS
    assert Delivery.objects.count() == EVENTS, "each event fanned out once"


@pytest.mark.postgresql
def test_a_runner_skips_the_fan_out_while_another_holds_the_cursor(alice: User) -> None:
    subscription_create(owner=alice, url="http://127.0.0.1:9/hook")
    Event.objects.create(type=Event.Type.PROJECT_CREATED, owner=alice, occurred_at=T0, data={})
    Cursor.objects.get_or_create(pk=1)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                Cursor.objects.select_for_update().get(pk=1)
                held.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        assert delivery_fan_out() == 0, "skipped, not waited for"
        assert not Delivery.objects.exists()
    finally:
        release.set()
        holder.join(10)
    assert delivery_fan_out() == 1
