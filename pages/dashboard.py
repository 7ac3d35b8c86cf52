"""The staff dashboard: who is running a timer now, today's time per project, and the health of
every runner process, kept current by the event stream (and every few seconds, for the runners,
whose heartbeats are not events)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from pages.summary import timesheet_live
from pages.views import person_page
from reports.exports import hms
from reports.selectors import ReportQuery, report_compute
from timesheets import clock
from timesheets.models import Timesheet
from timesheets.selectors import timesheet_read
from worker.selectors import HEARTBEAT_INTERVAL, runner_health_list

PERMISSION = "timesheets.view_timesheet"  # everyone's time, as in the admin and the API


@require_safe
@person_page
def dashboard(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied("The dashboard shows everyone's time: it needs view_timesheet.")
    now = clock.read()
    zone = timezone.get_current_timezone()
    today = now.astimezone(zone).date()
    report = report_compute(
        ReportQuery(start=today, end=today, zone=zone, group_by=("project",)), now=now
    )
    running = (
        timesheet_read()
        .filter(status=Timesheet.Status.RUNNING)
        .select_related("owner")
        .order_by("running_since", "pk")
    )
    return render(
        request,
        "pages/dashboard.html",
        {
            "zone": zone.key,
            "running": [(timesheet, timesheet_live(timesheet, now=now)) for timesheet in running],
            "projects": [(row.key[0], hms(row.total)) for row in report.rows],
            "total": hms(report.total),
            "runners": runner_health_list(),
            "refresh_s": HEARTBEAT_INTERVAL,
        },
    )
