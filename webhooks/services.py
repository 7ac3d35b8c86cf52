"""Every write of the webhooks. The API, the admin and the job call these functions.

Runners in any number of processes share the work through the database, in short
transactions: the fan-out holds the cursor row while it writes deliveries (a second runner
skips it, and the unique (subscription, event) constraint refuses a delivery written twice),
and a claim takes due deliveries with ``SKIP LOCKED`` and moves them past the attempt it is
about to make. On SQLite, where rows are not locked, transactions take the write lock up front
(``config.settings``), which serialises the same steps.

Each function takes ``now`` for tests only; otherwise instants come from ``timesheets.clock``
(the database server's clock on PostgreSQL).
"""

from __future__ import annotations

import base64
import math
import random
import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Case, F, Q, Value, When

from events.models import Event
from timesheets import clock
from timesheets.backends import backend
from timesheets.services import JOB_LOCK_TIMEOUT, JOB_STATEMENT_TIMEOUT
from webhooks import network
from webhooks.exceptions import EventTypesRefused, NotAllowed
from webhooks.models import Cursor, Delivery, Subscription

logger = structlog.get_logger("webhooks")

SECRET_BYTES = 24  # 192-bit keys: the Standard Webhooks range is 24 to 64 bytes
FAN_OUT_BATCH = 1000  # events per fan-out transaction
BACKOFF_BASE = 5.0  # seconds before the first retry
BACKOFF_CAP = 3600.0  # seconds; retries are at least hourly until giving up
CLAIM_MARGIN = 30.0  # seconds a claim lasts beyond the worst-case duration of its requests
ERROR_MAX_LENGTH = 500  # characters of an error kept on a delivery (the column's size)
EVERYONE_PERMISSION = "timesheets.view_timesheet"


def _job_transaction() -> AbstractContextManager[None]:
    """A transaction of the job's, whose statements give up as the other jobs' do, so that a
    blocked run ends in time for a graceful stop (and is redone by the next one)."""
    return backend().job_transaction(
        lock_timeout=JOB_LOCK_TIMEOUT, statement_timeout=JOB_STATEMENT_TIMEOUT
    )


# --- Subscriptions ------------------------------------------------------------------------


def subscription_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def subscription_create(
    *,
    owner: User,
    url: str,
    event_types: Sequence[str] = (),
    all_owners: bool = False,
    now: datetime | None = None,
) -> Subscription:
    """A new active subscription with a fresh secret; refuses what could not be delivered."""
    unknown = sorted(set(event_types) - set(Event.Type.values))
    if unknown:
        raise EventTypesRefused(
            f"Unknown event types: {', '.join(unknown)}; use any of "
            f"{', '.join(Event.Type.values)}, or none for every type."
        )
    if all_owners and not owner.has_perm(EVERYONE_PERMISSION):
        raise NotAllowed(
            "Only people who may view every timesheet can subscribe to everyone's events."
        )
    network.check_url(url)
    subscription = Subscription.objects.create(
        owner=owner,
        url=url,
        event_types=sorted({Event.Type(name).value for name in event_types}),
        all_owners=all_owners,
        secret=subscription_secret(),
        created_at=clock.read(now),
        after_event_id=Event.objects.order_by("-id").values_list("id", flat=True).first() or 0,
    )
    logger.info("webhook_subscribed", subscription=subscription.pk, owner=owner.pk)
    return subscription


def subscription_delete(*, subscription: Subscription) -> None:
    subscription_id = subscription.pk
    subscription.delete()  # its deliveries go with it
    logger.info("webhook_unsubscribed", subscription=subscription_id)


def subscription_enable(*, subscriptions: Iterable[int]) -> int:
    """Re-enable subscriptions: their failure count starts again, pending deliveries resume."""
    return Subscription.objects.filter(pk__in=list(subscriptions)).update(
        is_active=True, consecutive_failures=0, disabled_at=None, disabled_reason=""
    )


# --- Fan-out ------------------------------------------------------------------------------


def delivery_fan_out(*, batch: int = FAN_OUT_BATCH, now: datetime | None = None) -> int:
    """Write a delivery for each new event and each active subscription that wants it.

    Returns how many deliveries were written; 0 if another runner holds the cursor.
    """
    with _job_transaction():
        Cursor.objects.get_or_create(pk=1)
    written = 0
    while True:
        with _job_transaction():
            cursor = Cursor.objects.select_for_update(skip_locked=True).filter(pk=1).first()
            if cursor is None:
                return written  # another runner is fanning out right now
            events = list(Event.objects.filter(id__gt=cursor.last_event_id).order_by("id")[:batch])
            if not events:
                return written
            moment = clock.read(now)
            subscriptions = list(Subscription.objects.filter(is_active=True))
            deliveries = [
                Delivery(
                    subscription=subscription,
                    event=event,
                    created_at=moment,
                    next_attempt_at=moment,
                )
                for event in events
                for subscription in subscriptions
                if subscription.wants(event)
            ]
            # The cursor row is held, so no other runner writes these; the constraint is there
            # for whatever else might.
            Delivery.objects.bulk_create(deliveries, ignore_conflicts=True)
            cursor.last_event_id = events[-1].id
            cursor.save(update_fields=["last_event_id"])
        written += len(deliveries)
        logger.info(
            "webhook_fan_out",
            events=len(events),
            deliveries=len(deliveries),
            last_event_id=cursor.last_event_id,
        )
        if len(events) < batch:
            return written


# --- Claiming and recording attempts ------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """Everything needed to send one delivery, without the database."""

    delivery_id: int
    subscription_id: int
    url: str
    secret: str
    event_id: int
    type: str
    occurred_at: datetime
    data: Any
    attempt: int


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    subscription_id: int
    status_code: int | None
    latency_ms: float | None
    error: str

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def claim_duration(*, count: int) -> timedelta:
    """How long a claim of ``count`` deliveries keeps them from other runners: the longest
    its requests can take, queued behind the concurrency limit, plus a margin."""
    rounds = math.ceil(count / settings.WEBHOOKS_CONCURRENCY)
    return timedelta(seconds=rounds * settings.WEBHOOKS_TIMEOUT_SECONDS + CLAIM_MARGIN)


def delivery_claim(*, limit: int, now: datetime | None = None) -> list[Claimed]:
    """Take up to ``limit`` due deliveries of active subscriptions for this runner."""
    with _job_transaction():
        moment = clock.read(now)
        due = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(next_attempt_at__lte=moment, subscription__is_active=True)
            .order_by("next_attempt_at", "id")
            .values_list("id", flat=True)[:limit]
        )
        if not due:
            return []
        Delivery.objects.filter(id__in=due).update(
            attempts=F("attempts") + 1,
            last_attempt_at=moment,
            next_attempt_at=moment + claim_duration(count=len(due)),
        )
        rows = Delivery.objects.filter(id__in=due).select_related("subscription", "event")
        return [
            Claimed(
                delivery_id=row.pk,
                subscription_id=row.subscription_id,
                url=row.subscription.url,
                secret=row.subscription.secret,
                event_id=row.event_id,
                type=row.event.type,
                occurred_at=row.event.occurred_at,
                data=row.event.data,
                attempt=row.attempts,
            )
            for row in rows.order_by("id")
        ]


def backoff(*, attempts: int, rng: random.Random | None = None) -> timedelta:
    """The wait after a failed attempt: doubling from ``BACKOFF_BASE`` up to ``BACKOFF_CAP``,
    with jitter (half to all of it) so that retries to one endpoint do not arrive together."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(attempts - 1, 30))
    jitter = (rng or random).uniform(0.5, 1.0)
    return timedelta(seconds=ceiling * jitter)


def delivery_record(*, outcomes: Sequence[Outcome], now: datetime | None = None) -> None:
    """Record what the attempts answered: delivered after a 2xx only; otherwise a retry with
    backoff, or giving up once the retry period is over; disable failing subscriptions."""
    if not outcomes:
        return
    with _job_transaction():
        moment = clock.read(now)
        retry_for = timedelta(hours=settings.WEBHOOKS_RETRY_HOURS)
        deliveries = {
            delivery.pk: delivery
            for delivery in Delivery.objects.filter(id__in=[o.delivery_id for o in outcomes])
        }
        successes: set[int] = set()
        failures: dict[int, int] = defaultdict(int)
        changed = []
        for outcome in outcomes:
            delivery = deliveries.get(outcome.delivery_id)
            if delivery is None:
                continue  # deleted with its subscription meanwhile
            delivery.last_status_code = outcome.status_code
            delivery.last_latency_ms = outcome.latency_ms
            delivery.last_error = outcome.error[:ERROR_MAX_LENGTH]
            if outcome.succeeded:
                delivery.delivered_at = moment
                delivery.next_attempt_at = None
                successes.add(outcome.subscription_id)
            else:
                failures[outcome.subscription_id] += 1
                retry_at = moment + backoff(attempts=delivery.attempts)
                if retry_at > delivery.created_at + retry_for:
                    delivery.next_attempt_at = None
                    delivery.gave_up_at = moment
                    logger.warning(
                        "webhook_gave_up",
                        delivery=delivery.pk,
                        subscription=outcome.subscription_id,
                        attempts=delivery.attempts,
                    )
                else:
                    delivery.next_attempt_at = retry_at
            changed.append(delivery)
        _save_outcomes(changed)
        if successes:
            Subscription.objects.filter(pk__in=successes).update(consecutive_failures=0)
        only_failed = {pk: count for pk, count in failures.items() if pk not in successes}
        if only_failed:
            Subscription.objects.filter(pk__in=only_failed).update(
                consecutive_failures=F("consecutive_failures")
                + Case(*(When(pk=pk, then=Value(n)) for pk, n in only_failed.items()))
            )
            _disable_failing(subscriptions=only_failed, moment=moment)


OUTCOME_FIELDS = (
    "last_status_code",
    "last_latency_ms",
    "last_error",
    "delivered_at",
    "next_attempt_at",
    "gave_up_at",
)


def _save_outcomes(deliveries: Sequence[Delivery]) -> None:
    """One UPDATE by primary key, executed for every delivery in one call.

    ``bulk_update`` writes one CASE per field and row into a single statement, whose cost grows
    with the square of the rows on SQLite (seconds for a thousand); the driver's executemany
    runs one prepared statement per row instead.
    """
    if not deliveries:
        return
    meta = Delivery._meta
    fields = [field for field in meta.concrete_fields if field.name in OUTCOME_FIELDS]
    assert meta.pk is not None
    columns = [field.column for field in fields]
    key = meta.pk.column
    assert key is not None
    assert None not in columns
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(str(column))} = %s" for column in columns)
    # Names from the model, values as parameters: nothing from outside is spliced in.
    table = quote(meta.db_table)
    statement = f"UPDATE {table} SET {assignments} WHERE {quote(key)} = %s"  # noqa: S608
    rows = [
        [
            *(
                field.get_db_prep_save(getattr(delivery, field.attname), connection)
                for field in fields
            ),
            delivery.pk,
        ]
        for delivery in deliveries
    ]
    with connection.cursor() as cursor:
        cursor.executemany(statement, rows)


def _disable_failing(*, subscriptions: Iterable[int], moment: datetime) -> None:
    limit = settings.WEBHOOKS_DISABLE_AFTER_FAILURES
    failing = Subscription.objects.filter(
        Q(pk__in=list(subscriptions)),
        is_active=True,
        consecutive_failures__gte=limit,
    )
    disabled = list(failing.values_list("pk", flat=True))
    if disabled:
        failing.update(
            is_active=False,
            disabled_at=moment,
            disabled_reason=f"{limit} deliveries in a row failed.",
        )
        logger.warning("webhook_disabled", subscriptions=disabled, consecutive_failures=limit)


def delivery_retry_now(*, deliveries: Iterable[int], now: datetime | None = None) -> int:
    """Make deliveries due at once, given up or not; delivered ones stay delivered."""
    return Delivery.objects.filter(pk__in=list(deliveries), delivered_at__isnull=True).update(
        next_attempt_at=clock.read(now), gave_up_at=None
    )
