"""The server-rendered pages of a signed-in person: My time, entries, tokens, account.

Every page shows times in the person's time zone, and reads its forms' times in it. Every write
goes through ``timesheets.services``; what the domain refuses comes back as a form error, with
nothing changed. People only ever see and touch their own entries: another's is a 404.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import structlog
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from pages.forms import (
    AccountForm,
    DescriptionForm,
    PastEntryForm,
    SegmentForm,
    StartForm,
    TokenForm,
)
from pages.summary import runs_of, summarize, timesheet_live
from timesheets import clock
from timesheets.exceptions import TimesheetsError
from timesheets.models import ApiToken, Profile, Segment, Timesheet
from timesheets.selectors import correction_list, timesheet_read, user_time_zone
from timesheets.services import (
    api_token_create,
    api_token_revoke,
    profile_set_time_zone,
    segment_add,
    segment_change,
    segment_delete,
    timesheet_create,
    timesheet_delete,
    timesheet_describe,
    timesheet_review,
    timesheet_start,
    timesheet_stop,
)

logger = structlog.get_logger("pages")

View = Callable[..., HttpResponse]
require_form = require_http_methods(["GET", "HEAD", "POST"])
REFUSED = 400  # status of a page that shows a form's errors: nothing was changed


def person_page(view: View) -> View:
    """Signed in, and the person's time zone in force while the view reads forms and renders."""

    @login_required
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with timezone.override(user_time_zone(request.user)):
            return view(request, *args, **kwargs)

    return wrapped


def _render(
    request: HttpRequest, template: str, context: dict[str, Any], *, status: int = 200
) -> HttpResponse:
    """Render now, in the person's time zone; ``zone`` names it (its IANA name)."""
    return render(
        request,
        template,
        {"zone": str(timezone.get_current_timezone()), **context},
        status=status,
    )


def _person(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User), "person_page lets signed-in people only"
    return user


def _own_timesheet(request: HttpRequest, pk: int) -> Timesheet:
    return get_object_or_404(timesheet_read(), pk=pk, owner_id=request.user.pk)


# --- /api/ ------------------------------------------------------------------------------


@require_safe
def api_home(request: HttpRequest) -> HttpResponse:
    return redirect("api:openapi-view")


# --- My time ----------------------------------------------------------------------------


@require_safe
@person_page
def my_time(request: HttpRequest) -> HttpResponse:
    return _my_time_page(request, start_form=StartForm())


def _my_time_page(
    request: HttpRequest, *, start_form: StartForm, status: int = 200
) -> HttpResponse:
    now = clock.read()
    summary = summarize(owner_id=_person(request).pk, zone=timezone.get_current_timezone(), now=now)
    return _render(
        request,
        "pages/my_time.html",
        {"summary": summary, "start_form": start_form},
        status=status,
    )


@require_POST
@person_page
def timer_start(request: HttpRequest) -> HttpResponse:
    person = _person(request)
    form = StartForm(request.POST)
    if form.is_valid():
        try:
            timesheet_create(
                owner=person,
                project=form.cleaned_data["project"],
                description=form.cleaned_data["description"],
                start=True,
            )
        except TimesheetsError as error:
            form.add_error(None, error.message)
        else:
            messages.success(request, "Timer started.")
            return redirect("pages:my_time")
    return _my_time_page(request, start_form=form, status=REFUSED)


@require_POST
@person_page
def timer_restart(request: HttpRequest, pk: int) -> HttpResponse:
    person = _person(request)
    try:
        timesheet_start(timesheet_id=pk, owner_id=person.pk)
    except Timesheet.DoesNotExist:
        raise Http404("No such entry.") from None
    except TimesheetsError as error:
        messages.error(request, error.message)
        return redirect("pages:entry", pk=pk)
    messages.success(request, "Timer started.")
    return _back(request, pk)


@require_POST
@person_page
def timer_stop(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        timesheet_stop(timesheet_id=pk, owner_id=_person(request).pk)
    except Timesheet.DoesNotExist:
        raise Http404("No such entry.") from None
    messages.success(request, "Timer stopped.")
    return _back(request, pk)


def _back(request: HttpRequest, pk: int) -> HttpResponse:
    """Back to the entry's page when the form came from it, else to My time (a name, not an
    address: never an open redirect)."""
    if request.POST.get("back") == "entry":
        return redirect("pages:entry", pk=pk)
    return redirect("pages:my_time")


# --- Entries ----------------------------------------------------------------------------


@require_form
@person_page
def entry_add(request: HttpRequest) -> HttpResponse:
    person = _person(request)
    if request.method != "POST":
        return _render(request, "pages/entry_add.html", {"form": PastEntryForm()})
    form = PastEntryForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            # The entry exists only with its run: a refused run leaves nothing behind.
            with transaction.atomic():
                timesheet = timesheet_create(
                    owner=person, project=data["project"], description=data["description"]
                )
                segment_add(
                    timesheet_id=timesheet.pk,
                    started_at=data["started_at"],
                    ended_at=data["ended_at"],
                    actor=person,
                    owner_id=person.pk,
                )
        except TimesheetsError as error:
            form.add_error(None, error.message)
        else:
            messages.success(request, "Entry added.")
            return redirect("pages:entry", pk=timesheet.pk)
    return _render(request, "pages/entry_add.html", {"form": form}, status=REFUSED)


@require_safe
@person_page
def entry(request: HttpRequest, pk: int) -> HttpResponse:
    return _entry_page(request, _own_timesheet(request, pk))


def _entry_page(
    request: HttpRequest,
    timesheet: Timesheet,
    *,
    failed: tuple[int | None, SegmentForm] | None = None,
    description_form: DescriptionForm | None = None,
    error: str | None = None,
    status: int = 200,
) -> HttpResponse:
    """The entry with a form per run; ``failed``: the run (None: a new one) whose form failed."""
    now = clock.read()
    segments = list(timesheet.segments.order_by("started_at", "pk"))
    for segment in segments:
        segment.timesheet = timesheet
    rows = []
    for run in runs_of(segments, now=now):
        form = SegmentForm(
            initial={"started_at": run.segment.started_at, "ended_at": run.segment.ended_at},
            running=run.open,
            prefix=f"run-{run.segment.pk}",
        )
        if failed is not None and failed[0] == run.segment.pk:
            form = failed[1]
        rows.append((run, form))
    new_run = failed[1] if failed is not None and failed[0] is None else SegmentForm(prefix="new")
    history = [
        (correction, _readable(correction.before), _readable(correction.after))
        for correction in correction_list(timesheet_id=timesheet.pk)
    ]
    return _render(
        request,
        "pages/entry.html",
        {
            "timesheet": timesheet,
            "live": timesheet_live(timesheet, now=now),
            "rows": rows,
            "new_run": new_run,
            "description_form": description_form
            or DescriptionForm(initial={"description": timesheet.description}),
            "history": history,
            "error": error,
        },
        status=status,
    )


def _readable(record: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """A correction's before or after, its instants in the person's time zone."""
    if not record:
        return []
    shown = []
    for key, value in record.items():
        if key in {"id", "timesheet_id", "owner_id"}:
            continue  # the page is the entry's: its ids say nothing more
        shown_value: Any = value
        if key in {"started_at", "ended_at"} and isinstance(value, str):
            shown_value = parse_datetime(value) or value
        elif isinstance(value, (dict, list)):
            shown_value = json.dumps(value)
        shown.append((key.replace("_", " "), shown_value))
    return shown


def _segment_of(request: HttpRequest, pk: int, segment_pk: int) -> tuple[Timesheet, Segment]:
    timesheet = _own_timesheet(request, pk)
    segment = get_object_or_404(Segment, pk=segment_pk, timesheet_id=timesheet.pk)
    return timesheet, segment


@require_POST
@person_page
def segment_edit(request: HttpRequest, pk: int, segment_pk: int) -> HttpResponse:
    person = _person(request)
    timesheet, segment = _segment_of(request, pk, segment_pk)
    form = SegmentForm(request.POST, running=segment.ended_at is None, prefix=f"run-{segment.pk}")
    if form.is_valid():
        try:
            segment_change(
                segment_id=segment.pk,
                actor=person,
                owner_id=person.pk,
                started_at=form.cleaned_data["started_at"],
                ended_at=form.cleaned_data.get("ended_at"),
            )
        except TimesheetsError as error:
            form.add_error(None, error.message)
        else:
            messages.success(request, "Run changed.")
            return redirect("pages:entry", pk=timesheet.pk)
    return _entry_page(request, timesheet, failed=(segment.pk, form), status=REFUSED)


@require_POST
@person_page
def segment_new(request: HttpRequest, pk: int) -> HttpResponse:
    person = _person(request)
    timesheet = _own_timesheet(request, pk)
    form = SegmentForm(request.POST, prefix="new")
    if form.is_valid():
        try:
            segment_add(
                timesheet_id=timesheet.pk,
                started_at=form.cleaned_data["started_at"],
                ended_at=form.cleaned_data["ended_at"],
                actor=person,
                owner_id=person.pk,
            )
        except TimesheetsError as error:
            form.add_error(None, error.message)
        else:
            messages.success(request, "Run added.")
            return redirect("pages:entry", pk=timesheet.pk)
    return _entry_page(request, timesheet, failed=(None, form), status=REFUSED)


@require_POST
@person_page
def segment_remove(request: HttpRequest, pk: int, segment_pk: int) -> HttpResponse:
    person = _person(request)
    timesheet, segment = _segment_of(request, pk, segment_pk)
    try:
        segment_delete(segment_id=segment.pk, actor=person, owner_id=person.pk)
    except TimesheetsError as error:
        return _entry_page(request, timesheet, error=error.message, status=REFUSED)
    messages.success(request, "Run deleted.")
    return redirect("pages:entry", pk=timesheet.pk)


@require_POST
@person_page
def entry_describe(request: HttpRequest, pk: int) -> HttpResponse:
    timesheet = _own_timesheet(request, pk)
    form = DescriptionForm(request.POST)
    if not form.is_valid():
        return _entry_page(request, timesheet, description_form=form, status=REFUSED)
    timesheet_describe(
        timesheet=timesheet, description=form.cleaned_data["description"], actor_id=request.user.pk
    )
    messages.success(request, "Description saved.")
    return redirect("pages:entry", pk=timesheet.pk)


@require_POST
@person_page
def entry_delete(request: HttpRequest, pk: int) -> HttpResponse:
    person = _person(request)
    try:
        timesheet_delete(timesheet_id=pk, actor=person, owner_id=person.pk)
    except Timesheet.DoesNotExist:
        raise Http404("No such entry.") from None
    messages.success(request, "Entry deleted.")
    return redirect("pages:my_time")


@require_POST
@person_page
def entry_review(request: HttpRequest, pk: int) -> HttpResponse:
    person = _person(request)
    try:
        timesheet_review(timesheet_id=pk, actor=person, owner_id=person.pk)
    except Timesheet.DoesNotExist:
        raise Http404("No such entry.") from None
    messages.success(request, "Marked as reviewed.")
    return redirect("pages:entry", pk=pk)


# --- Tokens -----------------------------------------------------------------------------


@never_cache
@require_form
@person_page
def tokens(request: HttpRequest) -> HttpResponse:
    person = _person(request)
    now = timezone.now()
    issued = None
    status = 200
    if request.method == "POST":
        form = TokenForm(request.POST, now=now)
        if form.is_valid():
            issued = api_token_create(
                user=person,
                name=form.cleaned_data["name"],
                expires_at=form.cleaned_data["expires_at"],
                now=now,
            )
            logger.info("api_token_created", token_id=issued.token.pk, user_id=person.pk)
            form = TokenForm(now=now)
        else:
            status = REFUSED
    else:
        form = TokenForm(now=now)
    # The secret is in this answer's page and nowhere else: not in a redirect's message
    # (which would travel in a cookie or sit in the session), and never cached (never_cache).
    return _render(
        request,
        "pages/tokens.html",
        {
            "tokens": ApiToken.objects.filter(user=person).order_by("-created_at", "-pk"),
            "form": form,
            "issued": issued,
            "now": now,
        },
        status=status,
    )


@require_POST
@person_page
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        api_token_revoke(user=_person(request), token_id=pk, now=timezone.now())
    except ApiToken.DoesNotExist:
        raise Http404("No such token.") from None
    messages.success(request, "Token revoked.")
    return redirect("pages:tokens")


# --- Account ----------------------------------------------------------------------------


@require_form
@person_page
def account(request: HttpRequest) -> HttpResponse:
    person = _person(request)
    if request.method == "POST":
        form = AccountForm(request.POST)
        if form.is_valid():
            profile_set_time_zone(user=person, time_zone=form.cleaned_data["time_zone"])
            messages.success(request, "Time zone saved.")
            return redirect("pages:account")
        status = REFUSED
    else:
        current = Profile.objects.filter(user=person).values_list("time_zone", flat=True).first()
        form = AccountForm(initial={"time_zone": current or ""})
        status = 200
    return _render(
        request,
        "pages/account.html",
        {"form": form, "now": timezone.now()},
        status=status,
    )
