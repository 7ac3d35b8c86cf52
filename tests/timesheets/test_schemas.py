"""The API's request and response bodies, validated by pydantic without HTTP around them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from pydantic import TypeAdapter, ValidationError

from tests.conftest import T0, at
from timesheets.models import Project
from timesheets.schemas import MAX_ID, ProjectIn, ProjectOut, TimesheetIn, TimesheetOut, Username
from timesheets.services import timesheet_accrue_running, timesheet_create, timesheet_start


def error_types(error: ValidationError) -> set[tuple[str, str]]:
    return {(str(e["loc"][-1]), e["type"]) for e in error.errors()}


class TestTimesheetIn:
    def test_defaults_and_whitespace(self) -> None:
        assert TimesheetIn.model_validate({"project": 3}).model_dump() == {
            "project": 3,
            "description": "",
            "start": False,
        }
        parsed = TimesheetIn.model_validate({"project": 3, "description": "  x  ", "start": True})
        assert (parsed.description, parsed.start) == ("x", True)

    @pytest.mark.parametrize("project", [1, MAX_ID])
    def test_ids_within_the_database_range(self, project: int) -> None:
        assert TimesheetIn.model_validate({"project": project}).project == project

    @pytest.mark.parametrize(
        ("data", "field"),
        [
            ({}, "project"),
            ({"project": 0}, "project"),
            ({"project": -5}, "project"),
            ({"project": MAX_ID + 1}, "project"),
            ({"project": 2**70}, "project"),
            ({"project": float("inf")}, "project"),
            ({"project": "x"}, "project"),
            ({"project": 1, "description": "a\x00b"}, "description"),
            ({"project": 1, "description": "\ud800"}, "description"),
            ({"project": 1, "description": "x" * 501}, "description"),
            ({"project": 1, "start": "maybe"}, "start"),
        ],
    )
    def test_refused(self, data: dict[str, Any], field: str) -> None:
        with pytest.raises(ValidationError) as raised:
            TimesheetIn.model_validate(data)

        assert field in {loc for loc, _ in error_types(raised.value)}

    def test_the_messages_say_what_is_wrong(self) -> None:
        with pytest.raises(ValidationError, match="must not contain NUL characters"):
            TimesheetIn.model_validate({"project": 1, "description": "\x00"})
        with pytest.raises(ValidationError, match="unicode string"):
            TimesheetIn.model_validate({"project": 1, "description": "\udcff"})

    def test_500_characters_fit_once_stripped(self) -> None:
        text = "x" * 500
        parsed = TimesheetIn.model_validate({"project": 1, "description": f"  {text}  "})
        assert parsed.description == text


class TestProjectIn:
    def test_valid(self) -> None:
        parsed = ProjectIn.model_validate({"code": "A_b-9", "designation": "  Name "})
        assert parsed.model_dump() == {"code": "A_b-9", "designation": "Name", "is_active": True}

    @pytest.mark.parametrize(
        ("data", "field"),
        [
            ({"code": "", "designation": "x"}, "code"),
            ({"code": "a b", "designation": "x"}, "code"),
            ({"code": "a/b", "designation": "x"}, "code"),
            ({"code": "é", "designation": "x"}, "code"),
            ({"code": "a\x00", "designation": "x"}, "code"),
            ({"code": "c" * 33, "designation": "x"}, "code"),
            ({"code": "ok", "designation": ""}, "designation"),
            ({"code": "ok", "designation": " \t "}, "designation"),
            ({"code": "ok", "designation": "\x00"}, "designation"),
            ({"code": "ok", "designation": "\ud800"}, "designation"),
            ({"code": "ok", "designation": "d" * 201}, "designation"),
        ],
    )
    def test_refused(self, data: dict[str, Any], field: str) -> None:
        with pytest.raises(ValidationError) as raised:
            ProjectIn.model_validate(data)

        assert field in {loc for loc, _ in error_types(raised.value)}


class TestUsername:
    adapter: TypeAdapter[str] = TypeAdapter(Username)

    def test_a_name(self) -> None:
        assert self.adapter.validate_python("alice.b@example-1") == "alice.b@example-1"
        assert self.adapter.validate_python("u" * 150) == "u" * 150

    @pytest.mark.parametrize("name", ["a\x00b", "\ud800", "u" * 151])
    def test_what_no_database_could_look_up_is_refused(self, name: str) -> None:
        with pytest.raises(ValidationError):
            self.adapter.validate_python(name)


@pytest.mark.django_db
@pytest.mark.usefixtures("settings_limits")
class TestOutput:
    def test_project(self, project: Project) -> None:
        assert ProjectOut.of(project).model_dump() == {
            "id": project.pk,
            "code": "acme",
            "designation": "ACME rollout",
            "is_active": True,
        }

    def test_a_stopped_timesheet(self, alice: User, project: Project) -> None:
        timesheet = timesheet_create(owner=alice, project=project, description="d", now=at(1))

        timesheet.read_at = at(500)
        out = TimesheetOut.of(timesheet)

        assert out.model_dump() == {
            "id": timesheet.pk,
            "project": ProjectOut.of(project).model_dump(),
            "description": "d",
            "status": "stopped",
            "imputed_seconds": 0,
            "accumulated_seconds": 0,
            "accrued_until": None,
            "running_since": None,
            "auto_stopped": False,
            "created_at": at(1),
            "updated_at": at(1),
        }

    def test_a_running_timesheet_counts_up_to_now(self, alice: User, project: Project) -> None:
        timesheet = timesheet_create(owner=alice, project=project, description="", now=T0)
        timesheet = timesheet_start(timesheet_id=timesheet.pk, now=at(10.5))
        timesheet_accrue_running(now=at(20.25))
        timesheet.refresh_from_db()

        timesheet.read_at = at(30.000001)
        out = TimesheetOut.of(timesheet)

        assert out.status == "running"
        assert out.imputed_seconds == 9.75
        assert out.accumulated_seconds == timedelta(seconds=19, microseconds=500001).total_seconds()
        assert (out.running_since, out.accrued_until) == (at(10.5), at(20.25))

    def test_a_clock_behind_the_watermark_takes_nothing_back(
        self, alice: User, project: Project
    ) -> None:
        timesheet = timesheet_create(owner=alice, project=project, description="", now=T0)
        timesheet = timesheet_start(timesheet_id=timesheet.pk, now=at(0))
        timesheet_accrue_running(now=at(60))
        timesheet.refresh_from_db()

        timesheet.read_at = at(30)
        assert TimesheetOut.of(timesheet).accumulated_seconds == 60
