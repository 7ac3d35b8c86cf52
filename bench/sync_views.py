"""The API's start, stop and get as plain synchronous Django views, for comparison only.

What a team would write without async: function views served by a threaded WSGI server. They
authenticate the same bearer tokens, call the same services and answer the same JSON as
``timesheets.api``, without django-ninja and without any thread hop. Nothing serves them but
the benchmark (``bench.sync_settings``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from config.api import JsonEncoder
from events.api import RETRY_MILLISECONDS, event_message
from events.models import Event
from timesheets.auth import MAX_TOKEN_LENGTH
from timesheets.models import ApiToken
from timesheets.schemas import TimesheetOut
from timesheets.selectors import timesheet_read
from timesheets.services import (
    TOKEN_TOUCH_INTERVAL,
    api_token_digest,
    timesheet_start,
    timesheet_stop,
)


def _json(body: dict[str, object], status: int = 200) -> JsonResponse:
    return JsonResponse(body, status=status, encoder=JsonEncoder)


def _caller_id(request: HttpRequest) -> int | None:
    """The user id behind ``Authorization: Bearer <token>``, as ``timesheets.auth`` finds it."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret or len(secret) > MAX_TOKEN_LENGTH:
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(digest=api_token_digest(secret), user__is_active=True)
        .first()
    )
    now = timezone.now()
    if token is None or (token.expires_at is not None and token.expires_at <= now):
        return None
    if token.last_used_at is None or now - token.last_used_at >= TOKEN_TOUCH_INTERVAL:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user_id


def _answer(request: HttpRequest, timesheet_id: int, action: str) -> HttpResponse:
    owner_id = _caller_id(request)
    if owner_id is None:
        return _json({"detail": "Authentication required."}, status=401)
    timesheet = timesheet_read().filter(pk=timesheet_id, owner_id=owner_id).first()
    if timesheet is None:
        return _json({"detail": f"No timesheet with id {timesheet_id}."}, status=404)
    if action == "start":
        timesheet = timesheet_start(timesheet_id=timesheet.pk)
    elif action == "stop":
        timesheet = timesheet_stop(timesheet_id=timesheet.pk)
    return _json(TimesheetOut.of(timesheet).model_dump())


@csrf_exempt  # bearer tokens, no cookies: nothing for a forged request to ride on
@require_GET
def get_timesheet(request: HttpRequest, timesheet_id: int) -> HttpResponse:
    return _answer(request, timesheet_id, "get")


@csrf_exempt
@require_POST
def start_timesheet(request: HttpRequest, timesheet_id: int) -> HttpResponse:
    return _answer(request, timesheet_id, "start")


@csrf_exempt
@require_POST
def stop_timesheet(request: HttpRequest, timesheet_id: int) -> HttpResponse:
    return _answer(request, timesheet_id, "stop")


SYNC_POLL_INTERVAL = 0.2  # seconds between two reads of the outbox by one sync stream


def _events_after(owner_id: int, after: int) -> Iterator[bytes]:
    """The stream as a sync view serves it: its thread reads the outbox, sleeps, reads again."""
    yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
    while True:
        for event in Event.objects.filter(owner_id=owner_id, id__gt=after).order_by("id")[:500]:
            yield event_message(event)
            after = event.pk
        time.sleep(SYNC_POLL_INTERVAL)


@csrf_exempt
@require_GET
def follow_events(request: HttpRequest) -> HttpResponseBase:
    """``GET /api/events`` written without async: a thread held for as long as the stream."""
    owner_id = _caller_id(request)
    if owner_id is None:
        return _json({"detail": "Authentication required."}, status=401)
    after = request.GET.get("last_event_id")
    latest = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    return StreamingHttpResponse(
        _events_after(owner_id, int(after) if after else latest),
        content_type="text/event-stream",
    )
