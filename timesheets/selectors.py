"""Reads of the timesheets domain."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import QuerySet

from timesheets.models import Project, Timesheet
from timesheets.policy import run_end


def timesheet_accumulated(*, timesheet: Timesheet, now: datetime) -> timedelta:
    """Live accumulated time: ``imputed`` plus what has run since the watermark."""
    if (
        timesheet.status != Timesheet.Status.RUNNING
        or timesheet.accrued_until is None
        or timesheet.running_since is None
    ):
        return timesheet.imputed
    end = run_end(
        running_since=timesheet.running_since, accrued_until=timesheet.accrued_until, now=now
    )
    return timesheet.imputed + (end - timesheet.accrued_until)


def timesheet_list(
    *,
    owner_id: int | None = None,
    status: str | None = None,
    project_id: int | None = None,
) -> QuerySet[Timesheet]:
    """Timesheets, newest first, optionally narrowed to one owner, status or project."""
    timesheets = Timesheet.objects.select_related("project").order_by("-created_at", "-pk")
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
        Timesheet.objects.select_related("project")
        .filter(owner_id=owner_id, status=Timesheet.Status.RUNNING)
        .order_by("-running_since", "-pk")
    )


def project_list(*, include_inactive: bool) -> QuerySet[Project]:
    projects = Project.objects.order_by("code")
    return projects if include_inactive else projects.filter(is_active=True)
