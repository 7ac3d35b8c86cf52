"""The webhooks HTTP API: people manage their own subscriptions; staff with the model's
permissions see and delete everyone's. The secret is in the answer to the creation only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.http import HttpRequest
from ninja import Router, Schema, Status
from ninja.errors import HttpError
from pydantic import ConfigDict, Field, StrictBool, StringConstraints

from events.models import Event
from timesheets.schemas import MAX_ID, ErrorOut
from webhooks.exceptions import NotAllowed, WebhooksError
from webhooks.models import URL_MAX_LENGTH, Subscription
from webhooks.selectors import subscription_list
from webhooks.services import subscription_create, subscription_delete

router = Router(tags=["webhooks"])

MAX_EVENT_TYPES = 50  # more than there are types: a longer list is a mistake

ERRORS = {401: ErrorOut, 413: ErrorOut, 422: ErrorOut, 503: ErrorOut}
WRITE_ERRORS = {403: ErrorOut, **ERRORS}

Url = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=URL_MAX_LENGTH)
]


class SubscriptionIn(Schema):
    model_config = ConfigDict(extra="forbid")  # an unknown field is refused, not ignored

    url: Url = Field(description="An http:// or https:// URL whose host is public.")
    event_types: list[Event.Type] = Field(
        default_factory=list,
        max_length=MAX_EVENT_TYPES,
        description="The event types to receive; empty for every type.",
    )
    all_owners: StrictBool = Field(
        default=False,
        description="Everyone's events, not only yours (for people who may view every timesheet).",
    )


class SubscriptionOut(Schema):
    id: int
    owner: str
    url: str
    event_types: list[str]
    all_owners: bool
    is_active: bool
    consecutive_failures: int
    disabled_at: datetime | None
    disabled_reason: str
    created_at: datetime

    @classmethod
    def of(cls, subscription: Subscription) -> SubscriptionOut:
        return cls(
            id=subscription.pk,
            owner=subscription.owner.get_username(),
            url=subscription.url,
            event_types=list(subscription.event_types),
            all_owners=subscription.all_owners,
            is_active=subscription.is_active,
            consecutive_failures=subscription.consecutive_failures,
            disabled_at=subscription.disabled_at,
            disabled_reason=subscription.disabled_reason,
            created_at=subscription.created_at,
        )


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(
        description="Verifies the signatures (Standard Webhooks). Shown once: keep it now."
    )


def _caller(request: HttpRequest) -> User:
    user: User = request.auth  # type: ignore[attr-defined]
    return user


@router.get(
    "/webhooks",
    response={200: list[SubscriptionOut], **ERRORS},
    summary="List your webhook subscriptions (everyone's with the permission to view them)",
)
async def list_webhooks(request: HttpRequest) -> list[SubscriptionOut]:
    caller = _caller(request)
    sees_all = await caller.ahas_perm("webhooks.view_subscription")
    subscriptions = subscription_list(owner_id=None if sees_all else caller.pk)
    return [SubscriptionOut.of(subscription) async for subscription in subscriptions]


@router.post(
    "/webhooks",
    response={201: SubscriptionCreated, **WRITE_ERRORS},
    summary="Subscribe a URL to events; the answer holds the signing secret, once",
)
async def create_webhook(
    request: HttpRequest, payload: SubscriptionIn
) -> Status[SubscriptionCreated]:
    caller = _caller(request)
    try:
        subscription = await sync_to_async(subscription_create)(
            owner=caller,
            url=payload.url,
            event_types=payload.event_types,
            all_owners=payload.all_owners,
        )
    except NotAllowed as refused:
        raise HttpError(403, refused.message) from None
    except WebhooksError as refused:
        raise HttpError(422, refused.message) from None
    out = SubscriptionOut.of(subscription).model_dump()
    return Status(201, SubscriptionCreated(**out, secret=subscription.secret))


@router.delete(
    "/webhooks/{int:subscription_id}",
    response={204: None, 404: ErrorOut, **WRITE_ERRORS},
    summary="Delete a subscription (anyone's with the permission to delete them)",
)
async def delete_webhook(request: HttpRequest, subscription_id: int) -> Status[None]:
    caller = _caller(request)
    subscriptions = subscription_list(owner_id=caller.pk)
    if await caller.ahas_perm("webhooks.delete_subscription"):
        subscriptions = subscription_list(owner_id=None)
    subscription = (
        await subscriptions.filter(pk=subscription_id).afirst()
        if 1 <= subscription_id <= MAX_ID
        else None
    )
    if subscription is None:
        # Another person's subscription answers like a missing one: ids reveal nothing.
        raise HttpError(404, f"No webhook subscription with id {subscription_id}.")
    await sync_to_async(subscription_delete)(subscription=subscription)
    return Status(204, None)
