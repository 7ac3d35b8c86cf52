"""Sending deliveries to a real receiver on 127.0.0.1: signatures, retries, at least once."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from events.models import Event
from tests.conftest import at
from tests.webhooks.receiver import Receiver, receiving
from timesheets.models import Project
from timesheets.schemas import api_instant
from timesheets.services import timesheet_create, timesheet_start
from webhooks import delivery
from webhooks.delivery import webhook_deliver
from webhooks.models import Delivery
from webhooks.services import CLAIM_MARGIN, subscription_create

pytestmark = pytest.mark.django_db

create = sync_to_async(subscription_create)


async def deliveries() -> list[Delivery]:
    return [d async for d in Delivery.objects.select_related("event").order_by("id")]


async def test_what_the_receiver_gets_verifies_with_the_standard_webhooks_package(
    receiver: Receiver, alice: User, project: Project
) -> None:
    subscription = await create(owner=alice, url=receiver.url("/in?source=timesheets"))
    timesheet = await sync_to_async(timesheet_create)(
        owner=alice, project=project, description="Kick-off", now=at(0)
    )
    await sync_to_async(timesheet_start)(timesheet_id=timesheet.pk, now=at(1))

    assert await webhook_deliver() == 2

    events = [e async for e in Event.objects.order_by("id")]
    assert len(receiver.received) == 2
    by_id = {request.headers["webhook-id"]: request for request in receiver.received}
    assert set(by_id) == {str(e.pk) for e in events}
    for event in events:
        request = by_id[str(event.pk)]
        assert request.path == "/in?source=timesheets"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
        payload = Webhook(subscription.secret).verify(request.body, request.headers)
        assert payload == {
            "type": event.type,
            "timestamp": api_instant(event.occurred_at),
            "data": json.loads(json.dumps(event.data)),
        }
        # Another key, or a body changed on the way, does not verify.
        with pytest.raises(WebhookVerificationError):
            Webhook("whsec_" + "A" * 32).verify(request.body, request.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(subscription.secret).verify(request.body + b" ", request.headers)
    for done in await deliveries():
        assert done.delivered_at is not None
        assert done.next_attempt_at is None
        assert done.attempts == 1
        assert done.last_status_code == 204
        assert done.last_latency_ms is not None
        assert done.last_latency_ms > 0


def answers(*statuses: int, delay: float = 0.0) -> Callable[[int], tuple[int, float]]:
    """The n-th request gets the n-th status (the last one from then on)."""
    return lambda n: (statuses[min(n, len(statuses) - 1)], delay)


async def test_failures_are_retried_with_backoff_until_a_2xx(alice: User) -> None:
    with receiving(answers(500, 503, 200)) as receiver:
        await create(owner=alice, url=receiver.url(), now=at(0))
        await sync_to_async(Event.objects.create)(
            type=Event.Type.PROJECT_CREATED, owner=alice, occurred_at=at(0), data={}
        )
        assert await webhook_deliver(now=at(0)) == 1
        (failed,) = await deliveries()
        assert (failed.attempts, failed.last_status_code, failed.delivered_at) == (1, 500, None)
        assert failed.last_error == "Answered 500."
        assert failed.next_attempt_at is not None
        first_wait = (failed.next_attempt_at - at(0)).total_seconds()
        assert 2.5 <= first_wait <= 5

        assert await webhook_deliver(now=at(2.4)) == 0, "not due yet"
        assert await webhook_deliver(now=at(first_wait)) == 1
        (failed,) = await deliveries()
        assert (failed.attempts, failed.last_status_code) == (2, 503)
        assert failed.next_attempt_at is not None
        second_wait = (failed.next_attempt_at - at(first_wait)).total_seconds()
        assert 5 <= second_wait <= 10, "doubled"

        now = first_wait + second_wait
        assert await webhook_deliver(now=at(now)) == 1
        (done,) = await deliveries()
        assert (done.attempts, done.last_status_code, done.delivered_at) == (3, 200, at(now))
        assert done.last_error == ""
        assert await webhook_deliver(now=at(now + 3600)) == 0
    # Every attempt carried the same id: the receiver can tell a retry from a new event.
    assert len(set(receiver.ids())) == 1
    assert len(receiver.received) == 3


async def test_a_request_that_times_out_failed_and_is_retried(settings: Any, alice: User) -> None:
    settings.WEBHOOKS_TIMEOUT_SECONDS = 0.3
    with receiving(lambda n: (200, 2.0 if n == 0 else 0.0)) as receiver:
        await create(owner=alice, url=receiver.url(), now=at(0))
        await sync_to_async(Event.objects.create)(
            type=Event.Type.PROJECT_CREATED, owner=alice, occurred_at=at(0), data={}
        )
        assert await webhook_deliver(now=at(0)) == 1
        (late,) = await deliveries()
        assert late.delivered_at is None
        assert late.last_status_code is None
        assert late.last_error == "No answer within 0.3 s."
        assert late.next_attempt_at is not None
        assert await webhook_deliver(now=late.next_attempt_at) == 1
        (done,) = await deliveries()
        assert (done.attempts, done.last_status_code) == (2, 200)
        assert done.delivered_at is not None


async def test_a_crash_between_sending_and_recording_sends_again_with_the_same_id(
    receiver: Receiver, alice: User, monkeypatch: Any
) -> None:
    await create(owner=alice, url=receiver.url(), now=at(0))
    await sync_to_async(Event.objects.create)(
        type=Event.Type.PROJECT_CREATED, owner=alice, occurred_at=at(0), data={}
    )

    def crash(**_: Any) -> None:
        raise SystemExit("the process died here")

    monkeypatch.setattr(delivery, "delivery_record", crash)
    with pytest.raises(SystemExit):
        await webhook_deliver(now=at(0))
    monkeypatch.undo()
    assert len(receiver.received) == 1
    (claimed,) = await deliveries()
    assert claimed.delivered_at is None, "sent, but not known to be delivered"

    # While the claim lasts no runner sends it; once it lapses, it is sent again.
    assert await webhook_deliver(now=at(CLAIM_MARGIN)) == 0
    assert claimed.next_attempt_at is not None
    assert await webhook_deliver(now=claimed.next_attempt_at) == 1
    assert len(receiver.received) == 2
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    (done,) = await deliveries()
    assert (done.attempts, done.delivered_at) == (2, claimed.next_attempt_at)


async def test_a_subscription_failing_in_a_row_is_disabled(settings: Any, alice: User) -> None:
    settings.WEBHOOKS_DISABLE_AFTER_FAILURES = 3
    with receiving(answers(500)) as receiver:
        subscription = await create(owner=alice, url=receiver.url(), now=at(0))
        for _ in range(5):
            await sync_to_async(Event.objects.create)(
                type=Event.Type.PROJECT_CREATED, owner=alice, occurred_at=at(0), data={}
            )
        assert await webhook_deliver(now=at(0)) == 5
        await subscription.arefresh_from_db()
        assert not subscription.is_active
        assert subscription.consecutive_failures == 5
        assert subscription.disabled_reason == "3 deliveries in a row failed."
        # Nothing more is sent to it, nor fanned out to it.
        await sync_to_async(Event.objects.create)(
            type=Event.Type.PROJECT_CREATED, owner=alice, occurred_at=at(0), data={}
        )
        assert await webhook_deliver(now=at(7200)) == 0
    assert len(receiver.received) == 5
    assert await Delivery.objects.acount() == 5


async def test_a_url_that_now_resolves_to_loopback_is_not_contacted(
    settings: Any, receiver: Receiver, alice: User
) -> None:
    await create(owner=alice, url=receiver.url(), now=at(0))
    await sync_to_async(Event.objects.create)(
        type=Event.Type.PROJECT_CREATED, owner=alice, occurred_at=at(0), data={}
    )
    settings.WEBHOOKS_ALLOWED_NETWORKS = []
    assert await webhook_deliver(now=at(0)) == 1
    (refused,) = await deliveries()
    assert refused.delivered_at is None
    assert refused.last_status_code is None
    assert "not a public address" in refused.last_error
    assert receiver.received == []


async def test_many_deliveries_go_out_concurrently_within_the_limit(
    settings: Any, alice: User
) -> None:
    settings.WEBHOOKS_CONCURRENCY = 5
    with receiving(answers(200, delay=0.1)) as receiver:
        await create(owner=alice, url=receiver.url(), now=at(0))
        for _ in range(30):
            await sync_to_async(Event.objects.create)(
                type=Event.Type.PROJECT_CREATED, owner=alice, occurred_at=at(0), data={}
            )
        assert await webhook_deliver(now=at(0)) == 30
    assert sorted(receiver.ids()) == sorted(
        [str(pk) async for pk in Event.objects.values_list("id", flat=True)]
    )
    assert await Delivery.objects.filter(delivered_at__isnull=False).acount() == 30
    # Each request is held 0.1 s: a sequential sender would never overlap two.
    assert 1 < receiver.most_in_flight <= 5
