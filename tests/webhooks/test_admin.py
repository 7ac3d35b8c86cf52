"""The admin: subscriptions with their failures, re-enabling; the delivery log, retrying."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from events.models import Event
from tests.conftest import at
from webhooks.models import Delivery, Subscription
from webhooks.services import (
    Outcome,
    delivery_claim,
    delivery_fan_out,
    delivery_record,
    subscription_create,
)

pytestmark = pytest.mark.django_db

SUBSCRIPTIONS = reverse("admin:webhooks_subscription_changelist")
DELIVERIES = reverse("admin:webhooks_delivery_changelist")
URL = "http://127.0.0.1:9/hook"  # never contacted by these tests


@pytest.fixture
def admin_client(db: None) -> Client:
    root = User.objects.create_superuser(username="root", password=None, email="r@example.com")
    client = Client()
    client.force_login(root)
    return client


def failed_delivery(owner: User, *, failures_to_disable: int, settings: Any) -> Delivery:
    settings.WEBHOOKS_DISABLE_AFTER_FAILURES = failures_to_disable
    subscription_create(owner=owner, url=URL)
    Event.objects.create(type=Event.Type.PROJECT_CREATED, owner=owner, occurred_at=at(0), data={})
    delivery_fan_out(now=at(0))
    (claimed,) = delivery_claim(limit=10, now=at(0))
    delivery_record(
        outcomes=[
            Outcome(
                delivery_id=claimed.delivery_id,
                subscription_id=claimed.subscription_id,
                status_code=502,
                latency_ms=41.5,
                error="Answered 502.",
            )
        ],
        now=at(0),
    )
    return Delivery.objects.get()


def test_disabled_subscriptions_show_why_and_can_be_re_enabled(
    admin_client: Client, alice: User, settings: Any
) -> None:
    failed_delivery(alice, failures_to_disable=1, settings=settings)
    subscription = Subscription.objects.get()
    assert not subscription.is_active

    page = admin_client.get(SUBSCRIPTIONS).content.decode()
    assert "1 deliveries in a row failed." in page
    assert subscription.secret not in page
    change = admin_client.get(reverse("admin:webhooks_subscription_change", args=[subscription.pk]))
    assert change.status_code == 200
    assert subscription.secret not in change.content.decode()

    response = admin_client.post(
        SUBSCRIPTIONS, {"action": "reenable_selected", "_selected_action": [subscription.pk]}
    )
    assert response.status_code == 302
    subscription.refresh_from_db()
    assert subscription.is_active
    assert (subscription.consecutive_failures, subscription.disabled_at) == (0, None)


def test_the_delivery_log_shows_attempts_and_retries_now(
    admin_client: Client, alice: User, settings: Any
) -> None:
    delivery = failed_delivery(alice, failures_to_disable=100, settings=settings)
    page = admin_client.get(DELIVERIES).content.decode()
    assert "Answered 502." in page
    assert "502" in page
    assert "41.5" in page
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at > at(0)

    response = admin_client.post(
        DELIVERIES, {"action": "retry_now", "_selected_action": [delivery.pk]}
    )
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at > at(3600), "now, on the real clock"
    assert [c.delivery_id for c in delivery_claim(limit=10)] == [delivery.pk]


def test_adding_a_subscription_checks_the_url_and_shows_the_secret_once(
    admin_client: Client, alice: User, settings: Any
) -> None:
    add = reverse("admin:webhooks_subscription_add")
    settings.WEBHOOKS_ALLOWED_NETWORKS = []
    refused = admin_client.post(add, {"owner": alice.pk, "url": "http://10.0.0.1/hook"})
    assert refused.status_code == 200
    assert "not a public address" in refused.content.decode()
    assert not Subscription.objects.exists()

    settings.WEBHOOKS_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    everyone = admin_client.post(add, {"owner": alice.pk, "url": URL, "all_owners": "on"})
    assert everyone.status_code == 200
    assert "Only people who may view every timesheet" in everyone.content.decode()
    assert not Subscription.objects.exists()

    response = admin_client.post(
        add, {"owner": alice.pk, "url": URL, "event_types": ["timesheet.started"]}
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    subscription = Subscription.objects.get()
    assert subscription.event_types == ["timesheet.started"]
    shown = [m.message for m in get_messages(response.wsgi_request)]
    assert any(subscription.secret in message for message in shown)
