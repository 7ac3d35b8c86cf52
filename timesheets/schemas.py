"""The API's request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from ninja import Schema
from pydantic import AfterValidator, Field, StringConstraints

from timesheets.models import Project, Timesheet
from timesheets.selectors import timesheet_accumulated

MAX_ID = 2**63 - 1  # the largest primary key the database can hold


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


Description = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=500), AfterValidator(_storable)
]
Designation = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_storable),
]
# A name to look up, not to store: what the database could not compare is refused up front.
Username = Annotated[str, StringConstraints(max_length=150), AfterValidator(_storable)]
ProjectCode = Annotated[
    str, StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


class ErrorOut(Schema):
    detail: str = Field(description="What went wrong, and how to fix it.")


class ProjectIn(Schema):
    code: ProjectCode
    designation: Designation
    is_active: bool = True


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
    project: Id = Field(description="The project's id.")
    description: Description = ""
    start: bool = Field(default=False, description="Start the timer at once.")


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
    def of(cls, timesheet: Timesheet, *, now: datetime) -> TimesheetOut:
        return cls(
            id=timesheet.pk,
            project=ProjectOut.of(timesheet.project),
            description=timesheet.description,
            status=Timesheet.Status(timesheet.status).value,  # type: ignore[arg-type]
            imputed_seconds=timesheet.imputed.total_seconds(),
            accumulated_seconds=timesheet_accumulated(timesheet=timesheet, now=now).total_seconds(),
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
