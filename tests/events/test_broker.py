"""The broker hands each new event of the outbox to the subscribers it concerns."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connection

from events import broker
from events.broker import Closed, Subscription
from events.models import Event
from tests.conftest import at
from timesheets.models import Project
from timesheets.services import timesheet_create

pytestmark = pytest.mark.usefixtures("settings_limits")

WAIT = 20.0  # seconds: a bound against hanging, not a measure


async def create(owner: User, project: Project, *, seconds: float) -> Event:
    timesheet = await sync_to_async(timesheet_create)(
        owner=owner, project=project, description="", now=at(seconds)
    )
    return await Event.objects.aget(timesheet_id=timesheet.pk, type=Event.Type.TIMESHEET_CREATED)


async def received(subscription: Subscription, count: int) -> list[int]:
    ids: list[int] = []
    for _ in range(count):
        event = await subscription.next(within=WAIT)
        assert event is not None, f"no event within {WAIT} s; got {ids}"
        ids.append(event.pk)
    return ids


@pytest.mark.django_db
@pytest.mark.usefixtures("fast_polls")
async def test_each_subscriber_gets_the_events_it_concerns_in_order(
    alice: User, bob: User, project: Project
) -> None:
    hub = broker.broker()
    try:
        before = await create(alice, project, seconds=1)
        own = await hub.subscribe(owner_id=alice.pk)
        everyone = await hub.subscribe(owner_id=None, everyone=True)
        events = [await create(owner, project, seconds=2) for owner in (alice, bob, alice, bob)]

        assert await received(everyone, 4) == [event.pk for event in events]
        assert await received(own, 2) == [events[0].pk, events[2].pk]
        assert before.pk < events[0].pk, "what came before subscribing is the caller's to read"
        assert await own.next(within=0.1) is None
    finally:
        await broker.aclose()


@pytest.mark.parametrize(
    ("before", "quiet"),
    [(0.2, 0.3), (WAIT, 0.05)],
    ids=["the timer before is due sooner", "the timer before is due later"],
)
async def test_a_quiet_wait_lasts_its_own_time_whatever_the_wait_before_it(
    before: float, quiet: float
) -> None:
    """A wait's timer outlives it when an event ends the wait: it must then end the next
    wait neither early nor late."""
    loop = asyncio.get_running_loop()
    subscription = Subscription(owner_id=1, everyone=False)

    loop.call_later(0.05, subscription.offer, Event(pk=1, owner_id=1))
    first = await subscription.next(within=before)
    began = loop.time()
    nothing = await subscription.next(within=quiet)
    waited = loop.time() - began

    assert first is not None
    assert first.pk == 1
    assert nothing is None
    assert waited >= quiet - broker.TIMER_SLACK, "ended by the timer of the wait before"
    assert waited < WAIT / 2, "kept waiting for the timer of the wait before"


@pytest.mark.django_db
@pytest.mark.usefixtures("fast_polls")
async def test_a_subscriber_that_falls_behind_is_closed_not_buffered(
    alice: User, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker, "QUEUE_CAPACITY", 2)
    hub = broker.broker()
    try:
        slow = await hub.subscribe(owner_id=alice.pk)
        reader = await hub.subscribe(owner_id=alice.pk)
        events = []
        for number in range(5):
            events.append(await create(alice, project, seconds=number))
            # The reader keeps up; the slow one reads nothing.
            assert await received(reader, 1) == [events[-1].pk]

        with pytest.raises(Closed, match="slow"):
            await slow.next(within=WAIT)
        assert not slow.pending, "what it had queued is dropped, not kept"
        assert slow not in hub.subscriptions
        assert reader in hub.subscriptions
    finally:
        await broker.aclose()


@pytest.mark.django_db
@pytest.mark.usefixtures("fast_polls")
async def test_closing_ends_every_subscription_and_refuses_new_ones(alice: User) -> None:
    hub = broker.broker()
    subscription = await hub.subscribe(owner_id=alice.pk)
    waiting = asyncio.ensure_future(subscription.next(within=WAIT))
    await asyncio.sleep(0)

    await broker.aclose()

    with pytest.raises(Closed, match="shutdown"):
        await waiting
    late = await hub.subscribe(owner_id=alice.pk)
    with pytest.raises(Closed, match="shutdown"):
        await late.next(within=WAIT)
    assert broker.broker() is not hub, "a closed broker is not handed out again"
    await broker.aclose()


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
async def test_on_postgresql_a_commit_notifies_the_broker(
    alice: User, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Longer than the test's wait: only the notification can bring the event in time.
    monkeypatch.setattr(broker, "NOTIFIED_POLL_INTERVAL", 3600.0)
    hub = broker.broker()
    try:
        subscription = await hub.subscribe(owner_id=alice.pk)
        event = await create(alice, project, seconds=1)
        assert await received(subscription, 1) == [event.pk]
        assert hub.listening
    finally:
        await broker.aclose()


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
async def test_on_postgresql_listen_reconnects_and_reads_what_it_missed(
    alice: User, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker, "NOTIFIED_POLL_INTERVAL", 3600.0)
    monkeypatch.setattr(broker, "RECONNECT_FIRST_DELAY", 0.05)
    hub = broker.broker()
    try:
        subscription = await hub.subscribe(owner_id=alice.pk)
        first = await create(alice, project, seconds=1)
        assert await received(subscription, 1) == [first.pk]

        # The server ends the LISTEN connection; an event commits while no one listens.
        await sync_to_async(_terminate_listeners)()
        missed = await create(alice, project, seconds=2)

        assert await received(subscription, 1) == [missed.pk]
    finally:
        await broker.aclose()


def _terminate_listeners() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query = %s AND pid <> pg_backend_pid()",
            [f"LISTEN {broker.CHANNEL}"],
        )
        terminated: list[Any] = cursor.fetchall()
    assert terminated == [(True,)], "exactly one LISTEN connection per process"
