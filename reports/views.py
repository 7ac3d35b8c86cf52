"""The Reports page: the API's filters as a form, the totals as a table, links to the files."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_safe

from reports.exports import hms
from reports.forms import ReportForm
from reports.selectors import report_compute
from timesheets.selectors import user_time_zone

DEFAULT_DAYS = 7  # the page opens on the last week, today included


@require_safe
@login_required
def report_page(request: HttpRequest) -> HttpResponse:
    caller: User = request.user  # type: ignore[assignment]
    zone = user_time_zone(caller)
    data = request.GET.copy()
    if "from" not in data and "to" not in data:
        today = timezone.now().astimezone(zone).date()
        data.update(
            {
                "from": (today - timedelta(days=DEFAULT_DAYS - 1)).isoformat(),
                "to": today.isoformat(),
            }
        )
        if "group_by" not in request.GET:
            data.setlist("group_by", ["day", "project"])
    form = ReportForm(data, caller=caller)
    context: dict[str, object] = {"form": form, "time_zone": zone.key}
    status = 200
    if form.is_valid():
        report = report_compute(form.query(zone))
        groups = report.query.group_by
        query = data.copy()
        query.pop("format", None)
        # A filter left empty on the form is no filter: the API refuses an empty value.
        for name in [name for name, values in query.lists() if not any(values)]:
            query.pop(name)
        api = reverse("api:reports")
        context.update(
            report=report,
            groups=groups,
            rows=[(row.key, hms(row.total)) for row in report.rows],
            total=hms(report.total),
            csv_url=f"{api}?{query.urlencode()}&format=csv",
            xlsx_url=f"{api}?{query.urlencode()}&format=xlsx",
        )
    else:
        status = 403 if form.forbidden() else 400
    return render(request, "reports/report.html", context, status=status)
