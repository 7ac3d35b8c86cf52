"""``GET /api/events``: the domain's events as a Server-Sent Events stream.

A stream first sends what the client missed (every event after its ``Last-Event-ID``, read from
the outbox), then the events committed from then on, as the process's broker hands them over;
both in id order, which is commit order, so a client that resumes with its last id misses none
and gets none twice. Past the retention, the events it missed may be gone: it is sent a
``reset`` first, and should reload the state it follows.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import structlog
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import connection
from django.http import HttpRequest, StreamingHttpResponse
from ninja import HeaderEx, P, QueryEx, Router
from ninja.errors import HttpError

from config.threads import release_request_thread
from events import broker
from events.asgi import cutter
from events.models import Event
from timesheets.schemas import MAX_ID, ErrorOut, Username, api_instant

logger = structlog.get_logger(__name__)

router = Router()

VIEW_EVERYONE = "timesheets.view_timesheet"  # the permission to follow everyone's events
KEEPALIVE_INTERVAL = 15.0  # seconds between comment lines when no event comes
RETRY_MILLISECONDS = 3_000  # how long a client waits before it reconnects (the `retry:` hint)
CATCH_UP_BATCH = 500  # missed events read from the outbox per query
CACHED_MESSAGE = "_stream_message"
KEEPALIVE = b": keepalive\n\n"


def event_message(event: Event) -> bytes:
    """The event as the stream sends it; made once per event, as the broker hands the same
    instance to every stream it concerns."""
    message: bytes | None = event.__dict__.get(CACHED_MESSAGE)
    if message is None:
        data = {**event.data, "type": event.type, "id": event.pk}
        data["occurred_at"] = api_instant(event.occurred_at)
        payload = json.dumps(data, separators=(",", ":"))  # one line: no newline can split it
        message = f"id: {event.pk}\nevent: {event.type}\ndata: {payload}\n\n".encode()
        event.__dict__[CACHED_MESSAGE] = message
    return message


def reset_message(last_event_id: int) -> str:
    payload = json.dumps(
        {
            "type": "reset",
            "last_event_id": last_event_id,
            "detail": (
                f"Events after {last_event_id} may no longer be kept: some were missed. "
                "Reload the state you follow; the events still kept come next."
            ),
        },
        separators=(",", ":"),
    )
    return f"event: reset\ndata: {payload}\n\n"


async def _missed(*, owner_id: int | None, everyone: bool, after: int) -> AsyncIterator[Event]:
    events = Event.objects.order_by("id")
    if not everyone:
        events = events.filter(owner_id=owner_id)
    while True:
        batch = [event async for event in events.filter(id__gt=after)[:CATCH_UP_BATCH]]
        for event in batch:
            yield event
        if len(batch) < CATCH_UP_BATCH:
            return
        after = batch[-1].pk


async def _stream(
    *, owner_id: int | None, everyone: bool, last_event_id: int | None, reset: bool
) -> AsyncIterator[str | bytes]:
    sent = 0 if last_event_id is None else last_event_id
    resumed = 0
    yield f"retry: {RETRY_MILLISECONDS}\n\n"
    # Subscribed once the response is under way: its end, whatever ends it, unsubscribes.
    hub = broker.broker()
    subscription = await hub.subscribe(owner_id=owner_id, everyone=everyone)
    subscription.on_close = cutter()
    try:
        if reset:
            assert last_event_id is not None
            yield reset_message(last_event_id)
        if last_event_id is not None:
            async for event in _missed(owner_id=owner_id, everyone=everyone, after=sent):
                yield event_message(event)
                sent = event.pk
                resumed += 1
        # From here on the broker reads for it: the request's connection goes back to the pool
        # and its thread ends, rather than being held for as long as the stream lasts.
        await sync_to_async(_release_connection)()
        release_request_thread()
        while True:
            try:
                next_event = await subscription.next(within=KEEPALIVE_INTERVAL)
            except broker.Closed as closed:
                logger.info("event_stream_closed", reason=str(closed), last_id=sent)
                return
            if next_event is None:
                yield KEEPALIVE
            elif next_event.pk > sent:  # not already sent while catching up
                yield event_message(next_event)
                sent = next_event.pk
    finally:
        hub.unsubscribe(subscription)
        logger.info("event_stream_ended", last_id=sent, resumed=resumed)


def _release_connection() -> None:
    if not connection.in_atomic_block:  # a test's transaction
        connection.close()


def _parse_last_event_id(header: str | None, query: int | None) -> int | None:
    if query is not None:
        return query
    if header is None or not header.strip():
        return None
    try:
        value = int(header.strip())
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_ID:
        raise HttpError(422, f"Last-Event-ID must be an event id (0 to {MAX_ID}), not {header!r}.")
    return value


@router.get(
    "/events",
    response={
        200: Any,
        401: ErrorOut,
        403: ErrorOut,
        413: ErrorOut,
        422: ErrorOut,
        503: ErrorOut,
    },
    tags=["events"],
    summary="Follow the events of your timesheets as Server-Sent Events",
    description=(
        "A `text/event-stream`: each event has `id:` (its id), `event:` (its type) and `data:` "
        "(JSON: the new state, with `type`, `id` and `occurred_at`). Reconnect with the "
        "`Last-Event-ID` header (or `?last_event_id=`) to get first what you missed; an event "
        "`reset` says that some of it is no longer kept. A comment line comes every 15 s "
        "without events. People with the permission `timesheets.view_timesheet` get "
        "everyone's events, or one person's with `?user=`."
    ),
)
async def follow_events(
    request: HttpRequest,
    user: QueryEx[
        Username | None,
        P(description="With the permission to view timesheets: this username's events only."),
    ] = None,
    last_event_id: QueryEx[
        int | None,
        P(ge=0, le=MAX_ID, description="For clients that cannot send Last-Event-ID."),
    ] = None,
    last_event_id_header: HeaderEx[str | None, P(alias="Last-Event-ID")] = None,
) -> StreamingHttpResponse:
    caller: User = request.auth  # type: ignore[attr-defined]
    resume_after = _parse_last_event_id(last_event_id_header, last_event_id)
    owner_id: int | None = caller.pk
    everyone = False
    if user is None or user != caller.get_username():
        if await caller.ahas_perm(VIEW_EVERYONE):
            everyone = user is None
            if user is not None:
                owner = await get_user_model().objects.filter(username=user).afirst()
                if owner is None:
                    raise HttpError(422, f"No user named {user!r}.")
                owner_id = owner.pk
        elif user is not None:
            raise HttpError(403, "Only people who may view every timesheet follow others' events.")
    # The client saw that event: if it is gone, it was pruned, and so may be some after it.
    reset = bool(resume_after) and not await Event.objects.filter(pk=resume_after or 0).aexists()
    if everyone:
        owner_id = None
    logger.info(
        "event_stream_started",
        owner_id=owner_id,
        everyone=everyone,
        last_event_id=resume_after,
        reset=reset,
    )
    response = StreamingHttpResponse(
        _stream(owner_id=owner_id, everyone=everyone, last_event_id=resume_after, reset=reset),
        content_type="text/event-stream",
    )
    response["Cache-Control"] = "no-cache, no-store"
    # nginx would otherwise buffer the stream and hold events back.
    response["X-Accel-Buffering"] = "no"
    return response
