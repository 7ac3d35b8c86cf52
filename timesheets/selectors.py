"""Reads of the timesheets domain.

Timesheets come annotated with ``read_at``, the time model's clock (``timesheets.clock``) read
by the same statement, so that live time is computed at an instant of that clock and not of
this process's.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from timesheets import clock
from timesheets.models import Correction, Profile, Project, Timesheet
from timesheets.policy import max_run_length, run_end


def timesheet_accumulated(*, timesheet: Timesheet, now: datetime) -> timedelta:
    """Live accumulated time: ``imputed`` plus what has run since the watermark."""
    if (
        timesheet.status != Timesheet.Status.RUNNING
        or timesheet.accrued_until is None
        or timesheet.running_since is None
    ):
        return timesheet.imputed
    end = run_end(
        running_since=timesheet.running_since,
        accrued_until=timesheet.accrued_until,
        now=now,
        max_run=max_run_length(),
    )
    return timesheet.imputed + (end - timesheet.accrued_until)


def timesheet_live(*, timesheet: Timesheet) -> timedelta:
    """Live accumulated time at the instant the timesheet was read or written."""
    if timesheet.status != Timesheet.Status.RUNNING:
        return timesheet.imputed
    assert timesheet.read_at is not None, "read through a selector or written by a service"
    return timesheet_accumulated(timesheet=timesheet, now=timesheet.read_at)


def timesheet_read() -> QuerySet[Timesheet]:
    """Timesheets with their project, each stamped with the clock reading it was read at."""
    # The model declares read_at (not stored); the annotation fills it in.
    return Timesheet.objects.select_related("project").annotate(  # type: ignore[no-redef]
        read_at=clock.current()
    )


def timesheet_list(
    *,
    owner_id: int | None = None,
    status: str | None = None,
    project_id: int | None = None,
) -> QuerySet[Timesheet]:
    """Timesheets, newest first, optionally narrowed to one owner, status or project."""
    timesheets = timesheet_read().order_by("-created_at", "-pk")
    if owner_id is not None:
        timesheets = timesheets.filter(owner_id=owner_id)
    if status is not None:
        timesheets = timesheets.filter(status=status)
    if project_id is not None:
        timesheets = timesheets.filter(project_id=project_id)
    return timesheets


def timesheet_running_for(*, owner_id: int) -> QuerySet[Timesheet]:
    """The owner's running timesheets, the most recently started first."""
    return (
        timesheet_read()
        .filter(owner_id=owner_id, status=Timesheet.Status.RUNNING)
        .order_by("-running_since", "-pk")
    )


def project_list(*, include_inactive: bool) -> QuerySet[Project]:
    projects = Project.objects.order_by("code")
    return projects if include_inactive else projects.filter(is_active=True)


def correction_list(*, timesheet_id: int) -> QuerySet[Correction]:
    """An entry's history of corrections, the latest first."""
    return Correction.objects.select_related("actor").filter(timesheet_id=timesheet_id)


def user_time_zone(user: AbstractBaseUser | AnonymousUser) -> zoneinfo.ZoneInfo:
    """The person's time zone: their own choice, else the service's ``TIME_ZONE``."""
    name = ""
    if user.is_authenticated:
        name = (
            Profile.objects.filter(user_id=user.pk).values_list("time_zone", flat=True).first()
            or ""
        )
    try:
        return zoneinfo.ZoneInfo(name or settings.TIME_ZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        # A name that stopped existing (tzdata changes): the service's own.
        return zoneinfo.ZoneInfo(settings.TIME_ZONE)
