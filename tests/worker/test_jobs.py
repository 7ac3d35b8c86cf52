"""The heartbeat: every runner records how it is, and any process reads them all."""

from __future__ import annotations

import asyncio
import contextvars
import os
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, cast

import pytest
from asgiref.sync import sync_to_async
from django.db.models.functions import Now
from django.utils import timezone

from tests.processes import timesheets_locked
from worker.exceptions import JobDeferred
from worker.jobs import runner_heartbeat
from worker.models import RunnerProcess
from worker.registry import Job
from worker.runner import Runner, current_runner
from worker.selectors import SILENT_AFTER, runner_health_list
from worker.services import FORGET_AFTER, runner_process_beat

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_runner_beats_while_it_runs_and_says_so_when_it_stops() -> None:
    heartbeat = Job(
        name="runner_heartbeat", function=runner_heartbeat, interval=0.05, run_at_shutdown=True
    )
    runner = Runner(jobs=[heartbeat])
    task = asyncio.create_task(runner.run())
    for _ in range(200):
        await asyncio.sleep(0.05)
        if await RunnerProcess.objects.aexists():
            break

    (alive,) = await sync_to_async(runner_health_list)()
    assert (alive.pid, alive.state) == (os.getpid(), "healthy")
    assert [job["name"] for job in alive.jobs] == ["runner_heartbeat"]

    runner.request_stop()
    await task

    (stopped,) = await sync_to_async(runner_health_list)()
    assert stopped.state == "stopped", "the final beat at shutdown says it stopped"
    assert stopped.seen_at >= alive.seen_at
    assert await RunnerProcess.objects.acount() == 1, "one record per runner, updated in place"


def beat(*, started: str = "2026-12-01T00:00:00+00:00", **status: object) -> None:
    from datetime import datetime

    runner_process_beat(
        host="web-1",
        started_at=datetime.fromisoformat(started),
        status={"pid": 7, "running": True, "stopping": False, "jobs": [], **status},
    )


def test_a_runner_that_stops_beating_is_silent_then_forgotten() -> None:
    beat()
    assert [health.state for health in runner_health_list()] == ["healthy"]

    RunnerProcess.objects.update(seen_at=Now() - SILENT_AFTER - timedelta(seconds=1))
    (silent,) = runner_health_list()
    assert silent.state == "silent"
    assert silent.silent_for > SILENT_AFTER

    RunnerProcess.objects.update(seen_at=Now() - FORGET_AFTER - timedelta(seconds=1))
    assert runner_health_list() == [], "no longer shown"
    beat(started="2026-12-02T00:00:00+00:00")  # another runner's beat forgets the old one
    assert RunnerProcess.objects.count() == 1


def test_a_runner_whose_job_keeps_failing_is_failing() -> None:
    beat(jobs=[{"name": "accrue", "consecutive_failures": 3}])

    (failing,) = runner_health_list()

    assert failing.state == "failing"


async def test_a_beat_kept_waiting_by_other_writers_is_deferred_not_a_stopper() -> None:
    heartbeat = Job(name="runner_heartbeat", function=runner_heartbeat, interval=60.0)
    runner = Runner(jobs=[heartbeat])
    context = contextvars.copy_context()
    context.run(current_runner.set, runner)
    runner.started_at = timezone.now()

    with timesheets_locked(table="worker_runnerprocess"):
        beating = cast(Coroutine[Any, Any, int], runner_heartbeat(timezone.now()))
        beat = asyncio.create_task(beating, context=context)
        with pytest.raises(JobDeferred, match="busy with other writers"):
            await beat

    assert not await RunnerProcess.objects.aexists()
