"""``GET /api/reports``: time per person, project, day or week, as JSON, CSV or XLSX."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import IO, Literal

from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from ninja import Field, P, QueryEx, Router, Schema
from ninja.errors import HttpError

from reports.exports import csv_lines, filename, hms, xlsx_file
from reports.forms import ReportForm
from reports.selectors import Report, report_compute
from timesheets.schemas import ErrorOut, Id, Username
from timesheets.selectors import user_time_zone

router = Router(tags=["reports"])

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CHUNK = 64 * 1024  # bytes of the spreadsheet sent at a time
ERRORS = {401: ErrorOut, 403: ErrorOut, 413: ErrorOut, 422: ErrorOut, 503: ErrorOut}


class ReportRowOut(Schema):
    user: str | None = None
    project: str | None = Field(default=None, description="The project's code.")
    day: date | None = None
    week: date | None = Field(default=None, description="The week's Monday.")
    microseconds: int = Field(description="Exact total.")
    seconds: float
    duration: str = Field(description="H:MM:SS, the fraction of a second cut off.")


class ReportOut(Schema):
    start: date = Field(alias="from")
    end: date = Field(alias="to")
    time_zone: str = Field(description="The caller's: days begin at its midnight.")
    group_by: list[str]
    computed_at: datetime = Field(description="Runs in progress count up to this instant.")
    rows: list[ReportRowOut]
    total: ReportRowOut


def _row(keys: dict[str, object], total: timedelta) -> ReportRowOut:
    return ReportRowOut.model_validate(
        {
            **keys,
            "microseconds": total // timedelta(microseconds=1),
            "seconds": total.total_seconds(),
            "duration": hms(total),
        }
    )


def report_json(report: Report) -> ReportOut:
    groups = report.query.group_by
    return ReportOut.model_validate(
        {
            "from": report.query.start,
            "to": report.query.end,
            "time_zone": report.query.zone.key,
            "group_by": list(groups),
            "computed_at": report.computed_at,
            "rows": [
                _row(dict(zip(groups, row.key, strict=True)), row.total) for row in report.rows
            ],
            "total": _row({}, report.total),
        }
    )


def _compute(caller: User, data: dict[str, object]) -> Report | ReportForm:
    form = ReportForm(data, caller=caller)
    if not form.is_valid():
        return form
    return report_compute(form.query(user_time_zone(caller)))


async def _chunks(file: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while chunk := await sync_to_async(file.read)(CHUNK):
            yield chunk
    finally:
        file.close()


async def _lines(report: Report) -> AsyncIterator[str]:
    for line in csv_lines(report):
        yield line


def _attachment(response: HttpResponse | StreamingHttpResponse, name: str) -> None:
    response["Content-Disposition"] = f'attachment; filename="{name}"'


@router.get(
    "/reports",
    response={200: ReportOut, **ERRORS},
    by_alias=True,
    exclude_none=True,  # only the groups asked for
    summary="Time per person, project, day or week, in your time zone",
    url_name="reports",
)
async def reports(
    request: HttpRequest,
    start: QueryEx[date, P(alias="from", description="The first day, included.")],
    end: QueryEx[date, P(alias="to", description="The last day, included.")],
    group_by: QueryEx[
        list[str] | None,
        P(description="user, project, day, week: repeated or comma-separated."),
    ] = None,
    user: QueryEx[
        Username | None,
        P(description="Whose time (needs timesheets.view_timesheet for anyone else's)."),
    ] = None,
    project: QueryEx[Id | None, P(description="Only this project's time.")] = None,
    format: Literal["json", "csv", "xlsx"] = "json",
) -> ReportOut | HttpResponse | StreamingHttpResponse:
    """Days are the caller's local days; at most 366 of them (``MAX_REPORT_DAYS``).

    Without ``user``: your own time, or everyone's for holders of timesheets.view_timesheet.
    """
    caller: User = request.auth  # type: ignore[attr-defined]
    data: dict[str, object] = {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "group_by": group_by or [],
        "user": user or "",
        "project": project or "",
        "format": format,
    }
    result = await sync_to_async(_compute)(caller, data)
    if isinstance(result, ReportForm):
        raise HttpError(403 if result.forbidden() else 422, result.message())
    if format == "csv":
        response = StreamingHttpResponse(_lines(result), content_type="text/csv; charset=utf-8")
        _attachment(response, filename(result, "csv"))
        return response
    if format == "xlsx":
        file = await sync_to_async(xlsx_file)(result)
        response = StreamingHttpResponse(_chunks(file), content_type=XLSX)
        _attachment(response, filename(result, "xlsx"))
        return response
    return report_json(result)
