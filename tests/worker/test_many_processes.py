"""Several worker processes on one PostgreSQL database, one of them killed mid-run."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from tests.invariants import assert_invariants, segments_total
from tests.processes import Service
from timesheets.integrity import check
from timesheets.models import Project, Timesheet
from timesheets.services import timesheet_create, timesheet_start, timesheet_stop

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgresql,
    pytest.mark.django_db(transaction=True),
]

TIMESHEETS = 100
PROCESSES = 3
RUN_FOR = 5.0  # seconds


@pytest.fixture
def workers() -> Iterator[list[Service]]:
    started = [Service("runworker", env={"WORKER_TICK_SECONDS": "0.2"}) for _ in range(PROCESSES)]
    yield started
    for worker in started:
        worker.stop()


def test_three_processes_count_every_second_exactly_once_even_when_one_is_killed(
    settings: Any, alice: User, project: Project, workers: list[Service]
) -> None:
    settings.TIMESHEETS_MAX_RUNNING_PER_USER = 0
    started_at = timezone.now()
    for n in range(TIMESHEETS):
        timesheet_start(
            timesheet_id=timesheet_create(
                owner=alice, project=project, description=f"{n}", now=started_at
            ).pk,
            now=started_at,
        )
    for worker in workers:
        worker.wait_for("job_run", where=lambda event: event["job"] == "accrue_running_timesheets")

    time.sleep(RUN_FOR / 2)
    killed, *survivors = workers
    killed.send(signal.SIGKILL)
    assert killed.wait(5) == -signal.SIGKILL
    time.sleep(RUN_FOR / 2)
    for survivor in survivors:
        survivor.send(signal.SIGTERM)
    for survivor in survivors:
        assert survivor.wait(15) == 0

    running = list(Timesheet.objects.filter(status=Timesheet.Status.RUNNING))
    assert len(running) == TIMESHEETS
    for timesheet in running:
        assert timesheet.accrued_until is not None
        assert timesheet.running_since is not None
        # Nothing counted twice: the time accrued is exactly the time the watermark moved.
        assert timesheet.imputed == timesheet.accrued_until - timesheet.running_since
        assert timesheet.imputed >= timedelta(seconds=RUN_FOR - 1)
    for worker in workers:
        advanced = [e["rows"] for e in worker.events("job_run") if e["job"].startswith("accrue")]
        assert advanced, "every process took part"
    assert (
        sum(
            e["rows"] for w in workers for e in w.events("job_run") if e["job"].startswith("accrue")
        )
        >= TIMESHEETS * 10
    ), "the processes shared the work"

    stopped_at = timezone.now()
    for timesheet in running:
        stopped = timesheet_stop(timesheet_id=timesheet.pk, now=stopped_at)
        assert stopped.imputed == stopped_at - started_at, "to the microsecond"
        assert segments_total(stopped.pk, now=stopped_at) == stopped.imputed
    assert_invariants(now=stopped_at, max_running_per_user=0)


MANY = 100_000  # running timesheets


def insert_running(count: int, *, owner: User, project: Project) -> None:
    """``count`` running timesheets of one person, each with its open run, set up in bulk."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH made AS (
                INSERT INTO timesheets_timesheet (
                    owner_id, project_id, description, status, imputed, accrued_until,
                    running_since, auto_stopped, created_at, updated_at
                )
                SELECT %(owner)s, %(project)s, '', 'running', interval '0',
                       now() - interval '1 minute', now() - interval '1 minute', false,
                       now(), now()
                FROM generate_series(1, %(count)s)
                RETURNING id, running_since
            )
            INSERT INTO timesheets_segment (
                timesheet_id, owner_id, exclusive, started_at, ended_at, end_reason
            )
            SELECT id, %(owner)s, false, running_since, NULL, '' FROM made
            """,
            {"owner": owner.pk, "project": project.pk, "count": count},
        )


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_accruing_100k_rows_at_once_share_the_work_and_never_deadlock(
    settings: Any, alice: User, project: Project, processes: int
) -> None:
    settings.TIMESHEETS_MAX_RUNNING_PER_USER = 0
    insert_running(MANY, owner=alice, project=project)
    env = {"WORKER_TICK_SECONDS": "0.5", "TIMESHEETS_MAX_RUNNING_PER_USER": "0"}
    workers = [Service("runworker", env=env) for _ in range(processes)]
    try:
        for worker in workers:
            worker.wait_for(
                "job_run",
                where=lambda event: event["job"].startswith("accrue") and event["run"] >= 3,
                timeout=120,
            )
        for worker in workers:
            worker.send(signal.SIGTERM)
        for worker in workers:
            assert worker.wait(30) == 0, worker.output
        outputs = [worker.output for worker in workers]
        failures = [event for worker in workers for event in worker.events("job_failed")]
        moved = [
            sum(e["rows"] for e in worker.events("job_run") if e["job"].startswith("accrue"))
            for worker in workers
        ]
    finally:
        for worker in workers:
            worker.stop()

    assert failures == [], failures
    assert not any("deadlock" in output for output in outputs)
    assert all(rows > 0 for rows in moved), f"every process took part: {moved}"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE imputed <> accrued_until - running_since), count(*) "
            "FROM timesheets_timesheet WHERE status = 'running'"
        )
        (inexact, running) = cursor.fetchone()
    assert (inexact, running) == (0, MANY), "every second counted exactly once"
    report = check(max_running=0)
    assert report.ok, report.examples
