"""The webhooks' writes: subscribing, fanning events out, claiming and recording attempts."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import IntegrityError, transaction
from standardwebhooks.webhooks import Webhook

from events.models import Event
from tests.conftest import at
from timesheets.models import Project
from timesheets.services import project_create, timesheet_create, timesheet_start
from webhooks.exceptions import EventTypesRefused, NotAllowed, UrlRefused
from webhooks.models import Cursor, Delivery, Subscription
from webhooks.services import (
    Outcome,
    backoff,
    delivery_claim,
    delivery_fan_out,
    delivery_record,
    delivery_retry_now,
    subscription_create,
    subscription_enable,
)

pytestmark = pytest.mark.django_db

URL = "http://127.0.0.1:9/hook"  # never contacted by these tests


def grant(user: User, codename: str) -> User:
    user.user_permissions.add(Permission.objects.get(codename=codename))
    return User.objects.get(pk=user.pk)  # permissions are cached on the instance


def event(owner: User | None, type: Event.Type = Event.Type.TIMESHEET_CREATED) -> Event:
    return Event.objects.create(type=type, owner=owner, occurred_at=at(0), data={"n": 1})


# --- Subscribing ----------------------------------------------------------------------------


def test_a_subscription_gets_a_standard_webhooks_secret(alice: User) -> None:
    first = subscription_create(owner=alice, url=URL)
    second = subscription_create(owner=alice, url=URL)
    assert first.secret.startswith("whsec_")
    assert first.secret != second.secret
    # The package the receivers use accepts it, and it holds 24 random bytes.
    Webhook(first.secret)
    assert len(Webhook(first.secret)._whsecret) == 24
    assert first.is_active
    assert first.event_types == []


def test_unknown_event_types_are_refused(alice: User) -> None:
    with pytest.raises(EventTypesRefused, match=r"Unknown event types: timesheet\.exploded"):
        subscription_create(owner=alice, url=URL, event_types=["timesheet.exploded"])
    assert not Subscription.objects.exists()


def test_everyone_s_events_need_the_permission_to_view_every_timesheet(alice: User) -> None:
    with pytest.raises(NotAllowed):
        subscription_create(owner=alice, url=URL, all_owners=True)
    allowed = grant(alice, "view_timesheet")
    assert subscription_create(owner=allowed, url=URL, all_owners=True).all_owners


def test_a_refused_url_creates_nothing(settings: Any, alice: User) -> None:
    settings.WEBHOOKS_ALLOWED_NETWORKS = []
    with pytest.raises(UrlRefused):
        subscription_create(owner=alice, url=URL)
    assert not Subscription.objects.exists()


# --- Fan-out --------------------------------------------------------------------------------


def test_events_fan_out_to_the_subscriptions_that_want_them(
    alice: User, bob: User, project: Project
) -> None:
    before = event(alice)
    everything = subscription_create(owner=alice, url=URL)
    starts = subscription_create(owner=alice, url=URL, event_types=["timesheet.started"])
    everyone = subscription_create(owner=grant(bob, "view_timesheet"), url=URL, all_owners=True)
    paused = subscription_create(owner=alice, url=URL)
    Subscription.objects.filter(pk=paused.pk).update(is_active=False)

    timesheet = timesheet_create(owner=alice, project=project, description="a", now=at(1))
    timesheet_start(timesheet_id=timesheet.pk, now=at(2))
    bobs = timesheet_create(owner=bob, project=project, description="b", now=at(3))
    project_create(code="new", designation="New", now=at(4))

    assert delivery_fan_out(now=at(5)) == 2 + 1 + 4

    def received(subscription: Subscription) -> list[tuple[str, int | None]]:
        return [
            (d.event.type, d.event.timesheet_id)
            for d in Delivery.objects.filter(subscription=subscription).order_by("event_id")
        ]

    assert received(everything) == [
        ("timesheet.created", timesheet.pk),
        ("timesheet.started", timesheet.pk),
    ]
    assert received(starts) == [("timesheet.started", timesheet.pk)]
    assert received(everyone) == [
        ("timesheet.created", timesheet.pk),
        ("timesheet.started", timesheet.pk),
        ("timesheet.created", bobs.pk),
        ("project.created", None),
    ]
    assert received(paused) == []
    assert not Delivery.objects.filter(event=before).exists(), "it predates every subscription"
    assert Cursor.objects.get().last_event_id == Event.objects.order_by("id").last().pk  # type: ignore[union-attr]
    assert set(Delivery.objects.values_list("next_attempt_at", flat=True)) == {at(5)}

    assert delivery_fan_out(now=at(6)) == 0, "each event fans out once"


def test_fan_out_goes_in_batches_and_keeps_up(alice: User) -> None:
    subscription_create(owner=alice, url=URL)
    for _ in range(7):
        event(alice)
    assert delivery_fan_out(batch=3, now=at(0)) == 7
    assert Delivery.objects.count() == 7


def test_the_database_refuses_a_second_delivery_of_an_event(alice: User) -> None:
    subscription = subscription_create(owner=alice, url=URL)
    happened = event(alice)
    Delivery.objects.create(subscription=subscription, event=happened, created_at=at(0))
    with pytest.raises(IntegrityError), transaction.atomic():
        Delivery.objects.create(subscription=subscription, event=happened, created_at=at(0))


# --- Claims and outcomes --------------------------------------------------------------------


def pending(alice: User, count: int = 1) -> tuple[Subscription, list[Delivery]]:
    subscription = subscription_create(owner=alice, url=URL)
    for _ in range(count):
        event(alice)
    delivery_fan_out(now=at(0))
    return subscription, list(Delivery.objects.order_by("id"))


def test_a_claim_takes_due_deliveries_once_until_it_lapses(settings: Any, alice: User) -> None:
    settings.WEBHOOKS_CONCURRENCY = 2
    settings.WEBHOOKS_TIMEOUT_SECONDS = 10
    _, deliveries = pending(alice, 3)
    claimed = delivery_claim(limit=2, now=at(1))
    assert [c.delivery_id for c in claimed] == [d.pk for d in deliveries[:2]]
    assert [c.attempt for c in claimed] == [1, 1]
    assert [c.delivery_id for c in delivery_claim(limit=10, now=at(1))] == [deliveries[2].pk]
    assert delivery_claim(limit=10, now=at(2)) == []
    # The claim of 2 lasts one round of requests (2 at once) plus the margin: 10 s + 30 s.
    assert delivery_claim(limit=10, now=at(40.9)) == []
    again = delivery_claim(limit=10, now=at(41))
    assert [c.delivery_id for c in again] == [d.pk for d in deliveries]
    assert [c.attempt for c in again] == [2, 2, 2]


def test_deliveries_of_a_disabled_subscription_are_not_claimed(alice: User) -> None:
    subscription, _ = pending(alice)
    Subscription.objects.filter(pk=subscription.pk).update(is_active=False)
    assert delivery_claim(limit=10, now=at(1)) == []
    subscription_enable(subscriptions=[subscription.pk])
    assert len(delivery_claim(limit=10, now=at(1))) == 1


def outcome(delivery: Delivery, status: int | None, error: str = "") -> Outcome:
    return Outcome(
        delivery_id=delivery.pk,
        subscription_id=delivery.subscription_id,
        status_code=status,
        latency_ms=12.5,
        error=error,
    )


def test_only_a_2xx_delivers(alice: User) -> None:
    _, deliveries = pending(alice, 4)
    delivery_claim(limit=10, now=at(1))
    delivery_record(
        outcomes=[
            outcome(deliveries[0], 200),
            outcome(deliveries[1], 204),
            outcome(deliveries[2], 301, "Answered 301."),
            outcome(deliveries[3], None, "No answer within 5 s."),
        ],
        now=at(2),
    )
    done = {d.pk: d for d in Delivery.objects.all()}
    assert [done[d.pk].delivered_at for d in deliveries] == [at(2), at(2), None, None]
    assert done[deliveries[0].pk].next_attempt_at is None
    assert done[deliveries[2].pk].last_status_code == 301
    assert done[deliveries[3].pk].last_error == "No answer within 5 s."
    assert done[deliveries[3].pk].last_latency_ms == 12.5
    # One attempt failed: retried 2.5 to 5 s later.
    for failed in deliveries[2:]:
        retry_at = done[failed.pk].next_attempt_at
        assert retry_at is not None
        assert at(2) + timedelta(seconds=2.5) <= retry_at <= at(2) + timedelta(seconds=5)


def test_backoff_doubles_with_jitter_up_to_an_hour() -> None:
    rng = random.Random(4)
    for attempts in range(1, 40):
        ceiling = min(3600.0, 5.0 * 2 ** (attempts - 1))
        waits = [backoff(attempts=attempts, rng=rng).total_seconds() for _ in range(50)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
        assert len(set(waits)) > 1, "jittered"


def test_a_delivery_is_given_up_after_the_retry_period(settings: Any, alice: User) -> None:
    settings.WEBHOOKS_RETRY_HOURS = 1
    _, (delivery,) = pending(alice)
    now = 1.0
    while True:
        claimed = delivery_claim(limit=10, now=at(now))
        if not claimed:
            break
        delivery_record(outcomes=[outcome(delivery, 500, "Answered 500.")], now=at(now))
        delivery.refresh_from_db()
        if delivery.next_attempt_at is None:
            break
        now = (delivery.next_attempt_at - at(0)).total_seconds()
    delivery.refresh_from_db()
    assert delivery.gave_up_at is not None
    assert delivery.delivered_at is None
    # Each retry came before the hour was over; the next one would have been after.
    assert delivery.gave_up_at <= at(3600)
    assert delivery.attempts >= 8  # 5, 10, 20, ... 640 s (halved at worst) fit in an hour
    assert delivery_claim(limit=10, now=at(10 * 3600)) == []

    assert delivery_retry_now(deliveries=[delivery.pk], now=at(10 * 3600)) == 1
    assert len(delivery_claim(limit=10, now=at(10 * 3600))) == 1


def test_a_subscription_is_disabled_after_failures_in_a_row(settings: Any, alice: User) -> None:
    settings.WEBHOOKS_DISABLE_AFTER_FAILURES = 3
    subscription, deliveries = pending(alice, 5)
    delivery_claim(limit=10, now=at(1))
    delivery_record(outcomes=[outcome(d, 500) for d in deliveries[:2]], now=at(1))
    subscription.refresh_from_db()
    assert (subscription.is_active, subscription.consecutive_failures) == (True, 2)

    # A success starts the count again.
    delivery_record(outcomes=[outcome(deliveries[2], 200)], now=at(1))
    subscription.refresh_from_db()
    assert subscription.consecutive_failures == 0

    delivery_record(outcomes=[outcome(d, 503) for d in deliveries[3:]], now=at(1))
    subscription.refresh_from_db()
    assert (subscription.is_active, subscription.consecutive_failures) == (True, 2)
    delivery_claim(limit=10, now=at(60))
    delivery_record(outcomes=[outcome(deliveries[3], None, "refused")], now=at(60))
    subscription.refresh_from_db()
    assert not subscription.is_active
    assert subscription.disabled_at == at(60)
    assert subscription.disabled_reason == "3 deliveries in a row failed."

    assert subscription_enable(subscriptions=[subscription.pk]) == 1
    subscription.refresh_from_db()
    assert subscription.is_active
    assert (subscription.consecutive_failures, subscription.disabled_at) == (0, None)
