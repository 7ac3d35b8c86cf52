"""The API's request and response bodies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from ninja import Schema
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
)

from timesheets.models import Project, Segment, Timesheet
from timesheets.selectors import timesheet_live

MAX_ID = 2**63 - 1  # the largest primary key the database can hold


def api_instant(value: datetime) -> str:
    """How the API spells an instant: UTC, always six decimals, a trailing Z.

    Microseconds, so that clients can check that accumulated time equals the sum of its runs
    exactly; one spelling per instant, so that equal instants compare equal as text.
    """
    utc = value.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def _storable(value: str) -> str:
    # PostgreSQL refuses NUL in text and psycopg cannot encode lone surrogates: refuse them
    # here, with a message, instead of failing in the database.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


# Unicode White_Space: what pydantic's strip_whitespace removes, as a regular-expression class.
_WHITESPACE = r"\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NO_NUL = r"^[^\u0000]*$"


def _stripped_text(*, max_length: int, required: bool) -> WithJsonSchema:
    """How the document states text that is stripped before it is measured.

    A JSON Schema length counts the text as sent, whitespace included, so the limits go into a
    pattern instead: any whitespace, around at most ``max_length`` characters that begin and
    end with something else (at least one, if ``required``); no NUL anywhere.
    """
    text = rf"[^\u0000{_WHITESPACE}](?:[^\u0000]{{0,{max_length - 2}}}[^\u0000{_WHITESPACE}])?"
    if not required:
        text = f"(?:{text})?"
    pattern = rf"^[{_WHITESPACE}]*{text}[{_WHITESPACE}]*$"
    length = f"1 to {max_length}" if required else f"at most {max_length}"
    return WithJsonSchema(
        {
            "type": "string",
            "pattern": pattern,
            "description": f"Stripped of surrounding whitespace, then {length} characters; no NUL.",
        }
    )


Description = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=500),
    AfterValidator(_storable),
    _stripped_text(max_length=500, required=False),
]
Designation = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_storable),
    _stripped_text(max_length=200, required=True),
]
# A name to look up, not to store: what the database could not compare is refused up front.
Username = Annotated[
    str,
    StringConstraints(max_length=150),
    AfterValidator(_storable),
    Field(json_schema_extra={"pattern": NO_NUL}),
]
ProjectCode = Annotated[
    str, StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


def _json_integer(value: object) -> object:
    # JSON's integers include 1.0, as the document's "integer" does, but not true or "1",
    # which pydantic would otherwise read as 1. (In a query or a path every value is text.)
    if isinstance(value, bool | str):
        raise ValueError("must be an integer")
    return value


BodyId = Annotated[Id, BeforeValidator(_json_integer)]


class ErrorOut(Schema):
    detail: str = Field(description="What went wrong, and how to fix it.")


class ProjectIn(Schema):
    # A field the API does not know is refused, not ignored: a misspelt or read-only field
    # would otherwise be dropped without the client ever knowing.
    model_config = ConfigDict(extra="forbid")

    code: ProjectCode
    designation: Designation
    is_active: StrictBool = True


class ProjectOut(Schema):
    id: int
    code: str
    designation: str
    is_active: bool

    @classmethod
    def of(cls, project: Project) -> ProjectOut:
        return cls(
            id=project.pk,
            code=project.code,
            designation=project.designation,
            is_active=project.is_active,
        )


class TimesheetIn(Schema):
    model_config = ConfigDict(extra="forbid")  # as ProjectIn

    project: BodyId = Field(description="The project's id.")
    description: Description = ""
    start: StrictBool = Field(default=False, description="Start the timer at once.")


class TimesheetOut(Schema):
    id: int
    project: ProjectOut
    description: str
    status: Literal["running", "stopped"]
    imputed_seconds: float = Field(description="Time accrued up to the watermark.")
    accumulated_seconds: float = Field(description="Live accumulated time at the response.")
    accrued_until: datetime | None = Field(description="The watermark; null when stopped.")
    running_since: datetime | None = Field(
        description="Start of the current run (segment); null when stopped."
    )
    auto_stopped: bool = Field(description="A run was stopped at the maximum run length.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, timesheet: Timesheet) -> TimesheetOut:
        return cls(
            id=timesheet.pk,
            project=ProjectOut.of(timesheet.project),
            description=timesheet.description,
            status=Timesheet.Status(timesheet.status).value,  # type: ignore[arg-type]
            imputed_seconds=timesheet.imputed.total_seconds(),
            accumulated_seconds=timesheet_live(timesheet=timesheet).total_seconds(),
            accrued_until=timesheet.accrued_until,
            running_since=timesheet.running_since,
            auto_stopped=timesheet.auto_stopped,
            created_at=timesheet.created_at,
            updated_at=timesheet.updated_at,
        )


class TimesheetPage(Schema):
    items: list[TimesheetOut]
    count: int = Field(description="How many timesheets match, over all pages.")
    limit: int
    offset: int


def timesheet_json(timesheet: Timesheet) -> dict[str, Any]:
    """The timesheet as the API represents it, ready for JSON (events and webhooks carry it)."""
    data: dict[str, Any] = TimesheetOut.of(timesheet).model_dump()
    for name, value in data.items():
        if isinstance(value, datetime):
            data[name] = api_instant(value)
    return data


def project_json(project: Project) -> dict[str, Any]:
    """The project as the API represents it."""
    data: dict[str, Any] = ProjectOut.of(project).model_dump()
    return data


# Two days inside what Python can represent: room for the time-zone arithmetic of reports.
_EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=2)
_LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=2)


def _representable(value: datetime) -> datetime:
    # An instant near year 1 or 9999 may not exist in UTC once its offset is applied: refuse it
    # here, with a message, instead of failing in arithmetic or in the database.
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not _EARLIEST <= utc <= _LATEST:
        raise ValueError("must be an instant between the years 1 and 9999")
    return utc


Instant = Annotated[AwareDatetime, AfterValidator(_representable)]


class SegmentIn(Schema):
    model_config = ConfigDict(extra="forbid")  # as ProjectIn

    started_at: Instant = Field(description="ISO 8601 with its offset, e.g. 2026-01-05T09:00:00Z.")
    ended_at: Instant = Field(
        description="ISO 8601 with its offset; after started_at, not in the future. "
        "Runs added by hand are finished runs: a run in progress is started with the timer."
    )


class SegmentPatch(Schema):
    model_config = ConfigDict(extra="forbid")  # as ProjectIn

    started_at: Instant | None = Field(default=None, description="Absent: unchanged.")
    ended_at: Instant | None = Field(
        default=None,
        description="Absent: unchanged. null only for the run in progress, which stays open.",
    )


class SegmentOut(Schema):
    id: int
    timesheet_id: int
    started_at: datetime
    ended_at: datetime | None = Field(description="null while the run is in progress.")
    end_reason: str = Field(description="user, replaced, auto, manual; empty while running.")
    seconds: float | None = Field(description="The run's length; null while it is in progress.")

    @classmethod
    def of(cls, segment: Segment) -> SegmentOut:
        ended = segment.ended_at
        return cls(
            id=segment.pk,
            timesheet_id=segment.timesheet_id,
            started_at=segment.started_at,
            ended_at=ended,
            end_reason=segment.end_reason,
            seconds=None if ended is None else (ended - segment.started_at).total_seconds(),
        )


class MeOut(Schema):
    id: int
    username: str
    time_zone: str = Field(description="The IANA time zone reports and pages use for you.")
    is_staff: bool = Field(description="May log in to the admin site.")
    permissions: list[str] = Field(
        description="The permissions the API checks that you hold, e.g. timesheets.view_timesheet."
    )
