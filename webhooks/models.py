"""Webhook subscriptions, one delivery per (subscription, event), and the fan-out cursor."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from events.models import Event

URL_MAX_LENGTH = 2000  # characters; what browsers and most servers accept


class Subscription(models.Model):
    """Someone's endpoint, and which events it receives.

    ``event_types`` empty means every type. ``all_owners`` (only for people who may view every
    timesheet) also sends other people's events and those that concern no one (a new project).
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_subscriptions"
    )
    url = models.URLField(max_length=URL_MAX_LENGTH)
    event_types = models.JSONField(default=list, blank=True, help_text="Empty: every type.")
    all_owners = models.BooleanField(
        default=False, help_text="Everyone's events, not only the owner's."
    )
    is_active = models.BooleanField(default=True)
    # Standard Webhooks form: "whsec_" and the base64 of the key. Needed in clear to sign.
    secret = models.CharField(max_length=100)
    created_at = models.DateTimeField()
    # The last event that existed when it was created: it receives the ones after.
    after_event_id = models.PositiveBigIntegerField(default=0)
    consecutive_failures = models.PositiveIntegerField(default=0)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.url}"

    def wants(self, event: Event) -> bool:
        if event.pk <= self.after_event_id:
            return False
        if self.event_types and event.type not in self.event_types:
            return False
        return self.all_owners or (event.owner_id is not None and event.owner_id == self.owner_id)


class Delivery(models.Model):
    """One event for one subscription, until a 2xx answer or giving up.

    ``next_attempt_at`` is when it is due; a runner that claims it pushes it past the end of
    its own attempt, so no other runner takes it meanwhile and a runner that dies leaves it due
    again. Empty once delivered or given up.
    """

    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_latency_ms = models.FloatField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    gave_up_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "event"], name="delivery_once_per_subscription"
            )
        ]
        indexes = [models.Index(fields=["next_attempt_at"], name="delivery_due_idx")]

    def __str__(self) -> str:
        return f"#{self.pk} event {self.event_id} to subscription {self.subscription_id}"


class Cursor(models.Model):
    """The one row saying up to which event the fan-out has gone (``id`` is always 1)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_event_id = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"fanned out up to event {self.last_event_id}"
