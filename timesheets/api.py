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

from timesheets.models import Project, Timesheet
from timesheets.schemas import (
    MAX_ID,
    ErrorOut,
    Id,
    ProjectIn,
    ProjectOut,
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
)
from timesheets.services import (
    project_create,
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
    """The caller's timesheet; any timesheet for staff when only reading.

    Another person's timesheet answers 404 exactly like a missing one, so ids reveal nothing.
    """
    if not 1 <= timesheet_id <= MAX_ID:
        raise _not_found(timesheet_id)
    caller = _caller(request)
    timesheets = timesheet_read()
    if not (staff_reads and caller.is_staff):
        timesheets = timesheets.filter(owner_id=caller.pk)
    timesheet = timesheets.filter(pk=timesheet_id).first()
    if timesheet is None:
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
        Username | None, P(description="Staff only: list this username's timesheets.")
    ] = None,
    limit: QueryEx[int, P(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
    offset: QueryEx[int, P(ge=0, le=MAX_ID)] = 0,
) -> TimesheetPage:
    caller = _caller(request)
    owner_id = caller.pk
    if user is not None and user != caller.get_username():
        if not caller.is_staff:
            raise HttpError(403, "Only staff can list other people's timesheets.")
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
    summary="Create a project (staff only)",
)
def create_project(request: HttpRequest, payload: ProjectIn) -> Status[ProjectOut]:
    if not _caller(request).is_staff:
        raise HttpError(403, "Only staff can create projects.")
    project = project_create(
        code=payload.code,
        designation=payload.designation,
        is_active=payload.is_active,
        actor_id=_caller(request).pk,
    )
    return Status(201, ProjectOut.of(project))
