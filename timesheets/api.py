"""The timesheets HTTP API: views over the domain's selectors and services.

The views are synchronous, like the authentication: django-ninja runs both in one
``sync_to_async`` call, so all of a request's database work costs one thread hop (an async
view would hop once per query).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.http import HttpRequest
from ninja import P, QueryEx, Router, Status
from ninja.errors import HttpError

from timesheets.models import Project, Segment, Timesheet
from timesheets.permissions import ADD_PROJECT, CHANGE_TIMESHEET, held, may, may_read_others
from timesheets.schemas import (
    MAX_ID,
    ErrorOut,
    Id,
    MeOut,
    ProjectIn,
    ProjectOut,
    SegmentIn,
    SegmentOut,
    SegmentPatch,
    TimesheetIn,
    TimesheetOut,
    TimesheetPage,
    Username,
)
from timesheets.selectors import (
    project_list,
    timesheet_list,
    timesheet_read,
    timesheet_running_for,
    user_time_zone,
)
from timesheets.services import (
    project_create,
    segment_add,
    segment_change,
    segment_delete,
    timesheet_create,
    timesheet_start,
    timesheet_stop,
)
from worker import process

router = Router()

PAGE_SIZE = 50  # timesheets per page unless the caller asks otherwise
MAX_PAGE_SIZE = 200

# Any operation may answer these: no valid credentials (401), a body over the size limit
# (413), invalid input (422), the database unavailable (503, with Retry-After).
ERRORS = {401: ErrorOut, 413: ErrorOut, 422: ErrorOut, 503: ErrorOut}
# Unsafe methods also answer 403 to a session cookie sent without its CSRF token.
WRITE_ERRORS = {403: ErrorOut, **ERRORS}


def _caller(request: HttpRequest) -> User:
    user: User = request.auth  # type: ignore[attr-defined]
    return user


def _not_found(timesheet_id: int) -> HttpError:
    return HttpError(404, f"No timesheet with id {timesheet_id}.")


def _timesheet_of(request: HttpRequest, timesheet_id: int, *, staff_reads: bool) -> Timesheet:
    """The caller's timesheet; any timesheet, when only reading, for holders of view_timesheet.

    Another person's timesheet answers 404 exactly like a missing one, so ids reveal nothing.
    """
    if not 1 <= timesheet_id <= MAX_ID:
        raise _not_found(timesheet_id)
    caller = _caller(request)
    timesheet = timesheet_read().filter(pk=timesheet_id).first()
    if timesheet is None:
        raise _not_found(timesheet_id)
    # Permissions are read only for someone else's: the owner's own reads cost no query more.
    if timesheet.owner_id != caller.pk and not (staff_reads and may_read_others(caller)):
        raise _not_found(timesheet_id)
    return timesheet


def _write(service: Callable[..., Timesheet], request: HttpRequest, timesheet_id: int) -> Timesheet:
    """Start or stop the caller's own timesheet; anyone else's answers 404 like a missing one."""
    if not 1 <= timesheet_id <= MAX_ID:
        raise _not_found(timesheet_id)
    try:
        timesheet: Timesheet = service(timesheet_id=timesheet_id, owner_id=_caller(request).pk)
    except Timesheet.DoesNotExist:
        raise _not_found(timesheet_id) from None
    return timesheet


def _make_sure_time_is_accrued() -> None:
    """A running timer needs the runner: start it if this process should run it."""
    if settings.WORKER_AUTOSTART:
        process.ensure_running()


@router.get(
    "/timesheets",
    response={200: TimesheetPage, 403: ErrorOut, **ERRORS},
    tags=["timesheets"],
    summary="List your timesheets, newest first",
)
def list_timesheets(
    request: HttpRequest,
    status: Literal["running", "stopped"] | None = None,
    project: Id | None = None,
    user: QueryEx[
        Username | None,
        P(description="List this username's timesheets (needs timesheets.view_timesheet)."),
    ] = None,
    limit: QueryEx[int, P(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
    offset: QueryEx[int, P(ge=0, le=MAX_ID)] = 0,
) -> TimesheetPage:
    caller = _caller(request)
    owner_id = caller.pk
    if user is not None and user != caller.get_username():
        if not may_read_others(caller):
            raise HttpError(
                403, "Listing other people's timesheets needs the view_timesheet permission."
            )
        owner = get_user_model().objects.filter(username=user).first()
        if owner is None:
            raise HttpError(422, f"No user named {user!r}.")
        owner_id = owner.pk
    timesheets = timesheet_list(owner_id=owner_id, status=status, project_id=project)
    count = timesheets.count()
    items = [TimesheetOut.of(timesheet) for timesheet in timesheets[offset : offset + limit]]
    return TimesheetPage(items=items, count=count, limit=limit, offset=offset)


@router.post(
    "/timesheets",
    response={201: TimesheetOut, 409: ErrorOut, **WRITE_ERRORS},
    tags=["timesheets"],
    summary="Create a timesheet, optionally starting it",
)
def create_timesheet(request: HttpRequest, payload: TimesheetIn) -> Status[TimesheetOut]:
    project = Project.objects.filter(pk=payload.project).first()
    if project is None:
        raise HttpError(422, f"No project with id {payload.project}.")
    timesheet = timesheet_create(
        owner=_caller(request),
        project=project,
        description=payload.description,
        start=payload.start,
    )
    if payload.start:
        _make_sure_time_is_accrued()
    return Status(201, TimesheetOut.of(timesheet))


@router.get(
    "/timesheets/current",
    response={200: TimesheetOut, 404: ErrorOut, **ERRORS},
    tags=["timesheets"],
    summary="Your running timesheet",
)
def current_timesheet(request: HttpRequest) -> TimesheetOut:
    timesheet = timesheet_running_for(owner_id=_caller(request).pk).first()
    if timesheet is None:
        raise HttpError(404, "You have no running timesheet.")
    return TimesheetOut.of(timesheet)


@router.get(
    "/timesheets/{int:timesheet_id}",
    response={200: TimesheetOut, 404: ErrorOut, **ERRORS},
    tags=["timesheets"],
    summary="One timesheet",
)
def get_timesheet(request: HttpRequest, timesheet_id: int) -> TimesheetOut:
    timesheet = _timesheet_of(request, timesheet_id, staff_reads=True)
    return TimesheetOut.of(timesheet)


@router.post(
    "/timesheets/{int:timesheet_id}/start",
    response={200: TimesheetOut, 404: ErrorOut, 409: ErrorOut, **WRITE_ERRORS},
    tags=["timesheets"],
    summary="Start the timer (no change if it runs)",
)
def start_timesheet(request: HttpRequest, timesheet_id: int) -> TimesheetOut:
    timesheet = _write(timesheet_start, request, timesheet_id)
    _make_sure_time_is_accrued()
    return TimesheetOut.of(timesheet)


@router.post(
    "/timesheets/{int:timesheet_id}/stop",
    response={200: TimesheetOut, 404: ErrorOut, **WRITE_ERRORS},
    tags=["timesheets"],
    summary="Stop the timer (no change if it is stopped)",
)
def stop_timesheet(request: HttpRequest, timesheet_id: int) -> TimesheetOut:
    return TimesheetOut.of(_write(timesheet_stop, request, timesheet_id))


@router.get(
    "/projects",
    response={200: list[ProjectOut], **ERRORS},
    tags=["projects"],
    summary="List projects",
)
def list_projects(
    request: HttpRequest,
    include_inactive: QueryEx[bool, P(description="Include archived projects.")] = False,
) -> list[ProjectOut]:
    return [ProjectOut.of(project) for project in project_list(include_inactive=include_inactive)]


@router.post(
    "/projects",
    response={201: ProjectOut, 409: ErrorOut, **WRITE_ERRORS},
    tags=["projects"],
    summary="Create a project (needs timesheets.add_project)",
)
def create_project(request: HttpRequest, payload: ProjectIn) -> Status[ProjectOut]:
    if not may(_caller(request), ADD_PROJECT):
        raise HttpError(403, "Creating projects needs the add_project permission.")
    project = project_create(
        code=payload.code,
        designation=payload.designation,
        is_active=payload.is_active,
        actor_id=_caller(request).pk,
    )
    return Status(201, ProjectOut.of(project))


# --- Runs (segments) ------------------------------------------------------------------------
#
# A person corrects their own runs; holders of change_timesheet correct anyone's. Anyone else's
# run or timesheet answers 404 exactly like a missing one. The services check the change against
# the time model; what they refuse answers 422 (config/api.py).


def _no_run(segment_id: int) -> HttpError:
    return HttpError(404, f"No run with id {segment_id}.")


def _corrected_owner(request: HttpRequest) -> int | None:
    """Whose runs the caller may correct: their own, or anyone's (None)."""
    caller = _caller(request)
    return None if may(caller, CHANGE_TIMESHEET) else caller.pk


@router.get(
    "/timesheets/{int:timesheet_id}/segments",
    response={200: list[SegmentOut], 404: ErrorOut, **ERRORS},
    tags=["segments"],
    summary="A timesheet's runs, in time order",
)
def list_segments(request: HttpRequest, timesheet_id: int) -> list[SegmentOut]:
    timesheet = _timesheet_of(request, timesheet_id, staff_reads=True)
    runs = Segment.objects.filter(timesheet_id=timesheet.pk).order_by("started_at", "pk")
    return [SegmentOut.of(run) for run in runs]


@router.post(
    "/timesheets/{int:timesheet_id}/segments",
    response={201: SegmentOut, 404: ErrorOut, **WRITE_ERRORS},
    tags=["segments"],
    summary="Add a finished run to a timesheet",
)
def add_segment(request: HttpRequest, timesheet_id: int, payload: SegmentIn) -> Status[SegmentOut]:
    if not 1 <= timesheet_id <= MAX_ID:
        raise _not_found(timesheet_id)
    try:
        segment = segment_add(
            timesheet_id=timesheet_id,
            started_at=payload.started_at,
            ended_at=payload.ended_at,
            actor=_caller(request),
            owner_id=_corrected_owner(request),
        )
    except Timesheet.DoesNotExist:
        raise _not_found(timesheet_id) from None
    return Status(201, SegmentOut.of(segment))


@router.patch(
    "/segments/{int:segment_id}",
    response={200: SegmentOut, 404: ErrorOut, **WRITE_ERRORS},
    tags=["segments"],
    summary="Move a run's start or end",
)
def change_segment(request: HttpRequest, segment_id: int, payload: SegmentPatch) -> SegmentOut:
    if not 1 <= segment_id <= MAX_ID:
        raise _no_run(segment_id)
    if not payload.model_fields_set:
        raise HttpError(422, "Give started_at, ended_at or both: there is nothing to change.")
    owner_id = _corrected_owner(request)
    if "ended_at" in payload.model_fields_set and payload.ended_at is None:
        # null keeps a run in progress open; a finished run cannot be reopened.
        runs = Segment.objects.filter(pk=segment_id)
        if owner_id is not None:
            runs = runs.filter(owner_id=owner_id)
        ended_at = runs.values_list("ended_at", flat=True).first()
        if ended_at is not None:
            raise HttpError(
                422, "A finished run cannot be reopened: ended_at may be null only while it runs."
            )
    try:
        segment = segment_change(
            segment_id=segment_id,
            started_at=payload.started_at,
            ended_at=payload.ended_at,
            actor=_caller(request),
            owner_id=owner_id,
        )
    except Segment.DoesNotExist:
        raise _no_run(segment_id) from None
    return SegmentOut.of(segment)


@router.delete(
    "/segments/{int:segment_id}",
    response={204: None, 404: ErrorOut, **WRITE_ERRORS},
    tags=["segments"],
    summary="Delete a finished run",
)
def delete_segment(request: HttpRequest, segment_id: int) -> Status[None]:
    if not 1 <= segment_id <= MAX_ID:
        raise _no_run(segment_id)
    try:
        segment_delete(
            segment_id=segment_id,
            actor=_caller(request),
            owner_id=_corrected_owner(request),
        )
    except Segment.DoesNotExist:
        raise _no_run(segment_id) from None
    return Status(204, None)


@router.get("/me", response={200: MeOut, **ERRORS}, tags=["me"], summary="Who you are")
def me(request: HttpRequest) -> MeOut:
    caller = _caller(request)
    zone = user_time_zone(caller)
    return MeOut(
        id=caller.pk,
        username=caller.get_username(),
        time_zone=zone.key,
        is_staff=caller.is_staff,
        permissions=held(caller),
    )
