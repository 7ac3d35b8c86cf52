"""The timesheets' jobs run by the real runner against the real database."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from tests.invariants import assert_invariants
from timesheets.models import Project, Segment, Timesheet
from timesheets.services import timesheet_accrue_running, timesheet_create, timesheet_start
from worker import process
from worker.registry import Job
from worker.runner import Runner

pytestmark = pytest.mark.django_db(transaction=True)


def wait_until(condition: Callable[[], bool], *, timeout: float = 15.0) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < give_up, "timed out"
        time.sleep(0.01)


def start_now(owner: User, project: Project, *, at: datetime | None = None) -> Timesheet:
    now = at or timezone.now()
    timesheet = timesheet_create(owner=owner, project=project, description="", now=now)
    return timesheet_start(timesheet_id=timesheet.pk, now=now)


def runs_of(name: str) -> int:
    for job in process.status()["jobs"]:
        if job["name"] == name:
            return int(job["runs"])
    return 0


@pytest.mark.parametrize("mode", ["sync_to_async", "native"])
def test_the_accrual_job_accrues_running_time_exactly(
    mode: str, settings: Any, alice: User, bob: User, project: Project
) -> None:
    settings.WORKER_ORM_MODE = mode
    settings.WORKER_TICK_SECONDS = 0.05
    settings.TIMESHEETS_MAX_RUNNING_HOURS = 12
    started = [start_now(alice, project), start_now(bob, project)]

    process.ensure_running()
    wait_until(lambda: runs_of("accrue_running_timesheets") >= 4)
    stopping_at = timezone.now()
    process.stop(timeout=10)

    for timesheet in Timesheet.objects.filter(pk__in=[t.pk for t in started]):
        assert timesheet.accrued_until is not None
        assert timesheet.running_since is not None
        assert timesheet.accrued_until >= stopping_at, "the final accrual ran at shutdown"
        assert timesheet.imputed == timesheet.accrued_until - timesheet.running_since
    assert_invariants(now=timezone.now())


def test_the_forgotten_timer_job_stops_runs_at_the_limit(
    settings: Any, alice: User, project: Project
) -> None:
    settings.TIMESHEETS_MAX_RUNNING_HOURS = 1
    timesheet = start_now(alice, project, at=timezone.now() - timedelta(hours=3))

    process.ensure_running()
    wait_until(lambda: runs_of("stop_forgotten_timesheets") >= 1)
    process.stop(timeout=10)

    timesheet.refresh_from_db()
    assert timesheet.status == Timesheet.Status.STOPPED
    assert timesheet.auto_stopped
    assert timesheet.imputed == timedelta(hours=1)


def test_lowering_the_limit_during_a_run_stops_it_where_it_was_counted_up_to(
    settings: Any, alice: User, project: Project
) -> None:
    settings.TIMESHEETS_MAX_RUNNING_HOURS = 12
    timesheet = start_now(alice, project, at=timezone.now() - timedelta(hours=2))
    timesheet_accrue_running()
    accrued = Timesheet.objects.get(pk=timesheet.pk).imputed
    assert accrued >= timedelta(hours=2)
    settings.TIMESHEETS_MAX_RUNNING_HOURS = 1

    process.ensure_running()
    wait_until(lambda: runs_of("stop_forgotten_timesheets") >= 1)
    process.stop(timeout=10)

    stopped = Timesheet.objects.get(pk=timesheet.pk)
    assert (stopped.status, stopped.auto_stopped) == (Timesheet.Status.STOPPED, True)
    assert stopped.imputed >= accrued, "time already counted stays counted"
    run = Segment.objects.get(timesheet=timesheet)
    assert run.ended_at is not None
    assert stopped.imputed == run.ended_at - run.started_at
    assert run.end_reason == Segment.EndReason.AUTO
    assert_invariants(now=timezone.now())


class ConnectionProbe:
    """Records, for each run, whether it began without a connection and on which thread."""

    def __init__(self) -> None:
        self.began_closed: list[bool] = []
        self.threads: list[str] = []

    def sync(self, now: datetime) -> int:
        self.began_closed.append(connection.connection is None)
        count = Timesheet.objects.count()
        self.threads.append(threading.current_thread().name)
        return count

    async def native(self, now: datetime) -> int:
        self.began_closed.append(await sync_to_async(lambda: connection.connection is None)())
        count = await Timesheet.objects.acount()

        def where() -> str:
            # The connection the native query opened is still open on this thread.
            assert connection.connection is not None
            return threading.current_thread().name

        self.threads.append(await sync_to_async(where)())
        return count


@pytest.mark.parametrize("kind", ["sync", "native"])
def test_every_run_uses_the_runners_thread_and_a_fresh_connection(kind: str) -> None:
    probe = ConnectionProbe()
    function = probe.sync if kind == "sync" else probe.native
    process.set_factory(lambda: Runner(jobs=[Job(name="probe", function=function, interval=0.02)]))

    process.ensure_running()
    wait_until(lambda: len(probe.threads) >= 4)
    process.stop(timeout=10)

    assert all(probe.began_closed), "each run starts after the previous one closed its connection"
    assert all(name.startswith("worker-jobs") for name in probe.threads)
    assert len(set(probe.threads)) == 1


@pytest.mark.postgresql
def test_the_next_run_recovers_when_the_server_kills_the_connection(
    settings: Any, alice: User, project: Project
) -> None:
    settings.WORKER_TICK_SECONDS = 0.05
    start_now(alice, project)
    # A pool with idle connections, as after busy hours: a restart breaks them all at once.
    pool = getattr(connection, "pool", None)
    assert pool is not None
    idle = [pool.getconn() for _ in range(pool.max_size - 2)]
    for pooled in idle:
        pool.putconn(pooled)
    process.ensure_running()
    wait_until(lambda: runs_of("accrue_running_timesheets") >= 3)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        (terminated,) = cursor.fetchone()
    assert terminated >= len(idle), "the pool's connections were there to kill"
    killed_at = timezone.now()
    runs = runs_of("accrue_running_timesheets")
    wait_until(lambda: runs_of("accrue_running_timesheets") >= runs + 3, timeout=3)

    (job,) = [j for j in process.status()["jobs"] if j["name"] == "accrue_running_timesheets"]
    assert job["consecutive_failures"] == 0
    assert job["last_finished_at"] is not None
    assert job["last_finished_at"] > killed_at
    watermark = Timesheet.objects.get().accrued_until
    assert watermark is not None
    assert watermark > killed_at
