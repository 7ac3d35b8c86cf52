"""The invariant check finds every kind of violation, and ``check_timesheets`` reports it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection

from tests import processes
from tests.conftest import T0, at
from timesheets.integrity import RULES, check
from timesheets.models import Project, Segment, Timesheet
from timesheets.services import (
    timesheet_accrue_running,
    timesheet_create,
    timesheet_start,
    timesheet_stop,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settings_limits")]

NOW = at(1000)
# What the schema refuses on its own; dropped (or ignored) inside a test's transaction so that
# the check can be shown to find these states too.
GUARDS = {
    "timesheets_timesheet": [
        "timesheet_imputed_not_negative",
        "timesheet_watermark_matches_status",
    ],
    "timesheets_segment": [
        "segment_end_is_consistent",
        "segment_timesheet_runs_never_overlap",
        "segment_exclusive_runs_never_overlap",
    ],
}


@contextmanager
def unguarded() -> Iterator[None]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Deferred foreign-key checks must fire before a table is altered.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for table, names in GUARDS.items():
                for name in names:
                    cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
            yield
            return
        cursor.execute("PRAGMA ignore_check_constraints = ON")
        try:
            yield
        finally:
            cursor.execute("PRAGMA ignore_check_constraints = OFF")


def started(owner: User, project: Project, *, at_seconds: float = 0) -> Timesheet:
    timesheet = timesheet_create(owner=owner, project=project, description="", now=T0)
    return timesheet_start(timesheet_id=timesheet.pk, now=at(at_seconds))


def counts() -> dict[str, int]:
    report = check(now=NOW)
    return {rule: count for rule, count in report.counts.items() if count}


@pytest.fixture
def history(alice: User, bob: User, project: Project) -> dict[str, Timesheet]:
    """A consistent history: stopped, restarted, replaced, accrued, still running."""
    first = started(alice, project)
    timesheet_accrue_running(now=at(100))
    timesheet_stop(timesheet_id=first.pk, now=at(150))
    timesheet_start(timesheet_id=first.pk, now=at(200))
    second = started(alice, project, at_seconds=300)  # replaces the first
    bobs = started(bob, project, at_seconds=10)
    timesheet_accrue_running(now=at(900))
    return {"stopped": first, "running": second, "other": bobs}


def test_a_consistent_history_passes(history: dict[str, Timesheet]) -> None:
    report = check(now=NOW)

    assert report.ok, report.examples
    assert (report.timesheets, report.running, report.segments) == (3, 2, 4)


@pytest.fixture
def lone_stopped(make_user: Any, project: Project) -> Timesheet:
    """A person's only timesheet, run from 0 s to 100 s."""
    timesheet = started(make_user("stopped"), project)
    return timesheet_stop(timesheet_id=timesheet.pk, now=at(100))


@pytest.fixture
def lone_running(make_user: Any, project: Project) -> Timesheet:
    """A person's only timesheet, running since 0 s, accrued up to 500 s."""
    timesheet = started(make_user("running"), project)
    timesheet_accrue_running(now=at(500))
    return timesheet


def test_imputed_time_must_equal_the_runs(lone_stopped: Timesheet) -> None:
    Timesheet.objects.filter(pk=lone_stopped.pk).update(
        imputed=timedelta(seconds=100, microseconds=1)
    )

    assert counts() == {"imputed": 1}
    assert f"timesheet {lone_stopped.pk}" in str(check(now=NOW).examples[0])


def test_imputed_time_is_never_negative(alice: User, project: Project) -> None:
    timesheet = timesheet_create(owner=alice, project=project, description="", now=T0)
    with unguarded():
        Timesheet.objects.filter(pk=timesheet.pk).update(imputed=timedelta(microseconds=-1))

        assert counts() == {"not_negative": 1, "imputed": 1}


def test_a_running_timesheet_has_exactly_its_open_run(lone_running: Timesheet) -> None:
    Segment.objects.filter(timesheet=lone_running).update(started_at=at(1))

    assert counts() == {"open_run": 1}


def test_a_stopped_timesheet_has_no_open_run(lone_stopped: Timesheet) -> None:
    Segment.objects.filter(timesheet=lone_stopped).update(ended_at=None, end_reason="")

    assert counts() == {"open_run": 1, "imputed": 1}


def test_the_watermark_never_passes_the_clock(lone_running: Timesheet) -> None:
    Timesheet.objects.filter(pk=lone_running.pk).update(
        accrued_until=at(1001), imputed=timedelta(seconds=1001)
    )

    assert counts() == {"watermark": 1}


def test_no_run_ends_before_it_starts(lone_stopped: Timesheet) -> None:
    with unguarded():
        Segment.objects.filter(timesheet=lone_stopped).update(ended_at=at(-1))

        assert counts() == {"run_order": 1, "imputed": 1}


def test_no_run_ends_in_the_future(lone_stopped: Timesheet) -> None:
    Segment.objects.filter(timesheet=lone_stopped).update(ended_at=at(1001))
    Timesheet.objects.filter(pk=lone_stopped.pk).update(imputed=timedelta(seconds=1001))

    assert counts() == {"future": 1}


def test_runs_of_a_timesheet_never_overlap(alice: User, project: Project) -> None:
    timesheet = timesheet_create(owner=alice, project=project, description="", now=T0)
    with unguarded():
        for start, end in ((0, 10), (5, 8), (9, 20)):
            Segment.objects.create(
                timesheet=timesheet,
                owner=alice,
                started_at=at(start),
                ended_at=at(end),
                end_reason="user",
            )
        Timesheet.objects.filter(pk=timesheet.pk).update(imputed=timedelta(seconds=24))

        # Both later runs start inside the first, which reaches furthest until the third.
        assert counts() == {"overlap": 2}


def test_exclusive_runs_of_a_person_never_overlap(alice: User, project: Project) -> None:
    first, second = (
        timesheet_create(owner=alice, project=project, description="", now=T0) for _ in "12"
    )
    with unguarded():
        for timesheet, exclusive in ((first, True), (second, True), (second, False)):
            Segment.objects.create(
                timesheet=timesheet,
                owner=alice,
                exclusive=exclusive,
                started_at=at(0 if timesheet == first else 5 + 100 * (not exclusive)),
                ended_at=at(10 if timesheet == first else 15 + 100 * (not exclusive)),
                end_reason="user",
            )
        Timesheet.objects.filter(pk=first.pk).update(imputed=timedelta(seconds=10))
        Timesheet.objects.filter(pk=second.pk).update(imputed=timedelta(seconds=20))

        assert counts() == {"person_overlap": 1}


def test_no_one_runs_more_than_the_limit(alice: User, project: Project, settings: Any) -> None:
    settings.TIMESHEETS_MAX_RUNNING_PER_USER = 2
    started(alice, project)
    started(alice, project, at_seconds=1)
    settings.TIMESHEETS_MAX_RUNNING_PER_USER = 1

    report = check(now=NOW, max_running=1)

    assert dict(report.counts) == {"running_per_person": 1}
    assert report.examples[0].detail == f"user {alice.pk} runs 2 (limit 1)"


def test_a_run_belongs_to_its_timesheets_owner(lone_stopped: Timesheet, bob: User) -> None:
    Segment.objects.filter(timesheet=lone_stopped).update(owner=bob)

    assert counts() == {"owner": 1}


class TestCommand:
    def test_says_every_invariant_holds(self, history: dict[str, Timesheet]) -> None:
        out = StringIO()

        call_command("check_timesheets", stdout=out)

        text = out.getvalue()
        assert "Checked 3 timesheets (2 running) and 4 runs" in text
        assert all(f"  {rule}: 0" in text for rule in RULES)
        assert text.rstrip().endswith("Every invariant holds.")

    def test_exits_1_naming_the_offenders(self, history: dict[str, Timesheet]) -> None:
        stopped = history["stopped"]
        Timesheet.objects.filter(pk=stopped.pk).update(imputed=timedelta(hours=1))
        out = StringIO()

        with pytest.raises(CommandError, match=r"^1 violations") as raised:
            call_command("check_timesheets", stdout=out)

        assert raised.value.returncode == 1
        assert "  imputed: 1" in out.getvalue()
        assert f"- imputed: timesheet {stopped.pk}: imputed 1:00:00" in out.getvalue()

    def test_json(self, history: dict[str, Timesheet]) -> None:
        out = StringIO()

        call_command("check_timesheets", "--json", stdout=out)

        report = json.loads(out.getvalue())
        assert report["ok"] is True
        assert report["violations"] == dict.fromkeys(RULES, 0)
        assert (report["timesheets"], report["running"], report["segments"]) == (3, 2, 4)


@pytest.mark.django_db(transaction=True)
def test_the_command_exits_1_in_a_process_of_its_own(alice: User, project: Project) -> None:
    timesheet = started(alice, project)
    Timesheet.objects.filter(pk=timesheet.pk).update(imputed=timedelta(seconds=1))

    result = subprocess.run(
        [sys.executable, "manage.py", "check_timesheets"],
        cwd=processes.ROOT,
        env={"DATABASE_URL": processes.test_database_url(), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1, result.stderr
    assert "imputed: 1" in result.stdout
    assert result.stderr.strip().endswith("1 violations of the time model's invariants.")
