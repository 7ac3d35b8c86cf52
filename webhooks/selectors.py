"""Reads of the webhooks."""

from __future__ import annotations

from django.db.models import QuerySet

from webhooks.models import Delivery, Subscription


def subscription_list(*, owner_id: int | None) -> QuerySet[Subscription]:
    """Someone's subscriptions, oldest first; everyone's with ``owner_id`` None."""
    subscriptions = Subscription.objects.select_related("owner").order_by("id")
    if owner_id is not None:
        subscriptions = subscriptions.filter(owner_id=owner_id)
    return subscriptions


def delivery_pending(*, subscription_id: int) -> QuerySet[Delivery]:
    """The deliveries of a subscription still to be made (neither delivered nor given up)."""
    return Delivery.objects.filter(
        subscription_id=subscription_id, delivered_at__isnull=True, gave_up_at__isnull=True
    )
