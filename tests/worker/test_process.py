"""One runner per process: where it runs, that it stays alive, and what it inherits."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
import structlog
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.contrib.auth.models import User
from django.test import Client

from tests.worker.support import events
from worker import process
from worker.registry import Job
from worker.runner import Runner

TICK = 0.02  # seconds


class Probe:
    """An async job that records what it sees: its log context and its database thread."""

    def __init__(self) -> None:
        self.runs = 0
        self.contexts: list[dict[str, Any]] = []
        self.threads: list[str] = []

    async def __call__(self, now: datetime) -> int:
        self.runs += 1
        self.contexts.append(structlog.contextvars.get_contextvars())
        self.threads.append(await sync_to_async(lambda: threading.current_thread().name)())
        return 0


@pytest.fixture
def probe() -> Probe:
    probe = Probe()
    process.set_factory(
        lambda: Runner(
            jobs=[Job(name="probe", function=probe, interval=TICK, run_at_shutdown=True)],
            lag_probe_interval=TICK,
        )
    )
    return probe


def wait_until(condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < give_up, "timed out"
        time.sleep(0.005)


async def await_until(condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < give_up, "timed out"
        await asyncio.sleep(0.005)


def test_starting_twice_keeps_one_runner_that_no_one_else_references(probe: Probe) -> None:
    runner = process.ensure_running()
    assert process.ensure_running() is runner
    del runner
    gc.collect()

    runs = probe.runs
    wait_until(lambda: probe.runs >= runs + 5)
    assert [t.name for t in threading.enumerate()].count("worker-loop") == 1
    assert process.status()["mode"] == "own_thread"
    assert process.status()["running"] is True


async def test_on_the_serving_loop_the_runner_is_one_strongly_held_task(probe: Probe) -> None:
    process.mark_serving_loop(asyncio.get_running_loop())

    process.ensure_running()
    process.ensure_running()
    gc.collect()
    await await_until(lambda: probe.runs >= 5)

    names = [task.get_name() for task in asyncio.all_tasks()]
    assert names.count("worker-runner") == 1
    assert names.count("worker-job:probe") == 1
    assert process.status()["mode"] == "serving_loop"
    await process.astop()
    assert process.current() is None


async def test_a_sync_view_in_a_worker_thread_starts_it_on_the_serving_loop(
    probe: Probe,
) -> None:
    process.mark_serving_loop(asyncio.get_running_loop())

    # Where the API's synchronous views run under uvicorn: a thread beside the serving loop.
    runner = await sync_to_async(process.ensure_running, thread_sensitive=False)()
    again = await sync_to_async(process.ensure_running, thread_sensitive=False)()
    await await_until(lambda: probe.runs >= 2)

    assert again is runner
    assert process.status()["mode"] == "serving_loop"
    names = [task.get_name() for task in asyncio.all_tasks()]
    assert names.count("worker-runner") == 1
    await process.astop()


async def test_a_runner_started_inside_a_request_inherits_nothing_from_it(
    probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    process.mark_serving_loop(asyncio.get_running_loop())

    # What a request served by Django looks like from inside a view.
    async with ThreadSensitiveContext():
        with structlog.contextvars.bound_contextvars(request_id="request-1"):
            process.ensure_running()
    await await_until(lambda: probe.runs >= 2)
    await process.astop()

    assert all(context == {} for context in probe.contexts)
    assert all(name.startswith("worker-jobs") for name in probe.threads)
    assert len(set(probe.threads)) == 1, "one thread of the runner's own"
    # "runner_hosted" is the request's own event (it says which request started the runner);
    # everything the runner logs afterwards is its own.
    runner_events = [
        e for e in events(caplog) if e.get("logger") == "worker" and e["event"] != "runner_hosted"
    ]
    assert {"runner_started", "job_run", "runner_stopped"} <= {e["event"] for e in runner_events}
    assert all("request_id" not in event for event in runner_events)
    (hosted,) = events(caplog, "runner_hosted")
    assert hosted["request_id"] == "request-1"


@pytest.mark.django_db(transaction=True)
def test_under_wsgi_the_runner_started_by_the_async_view_outlives_the_response(
    probe: Probe, staff: User
) -> None:
    client = Client()  # Django's WSGI handler, as runserver uses
    client.force_login(staff)

    response = client.post("/api/worker/start")

    assert response.status_code == 200
    assert response.json()["mode"] == "own_thread"
    runs = probe.runs
    wait_until(lambda: probe.runs >= runs + 5)  # long after the view's own loop was closed
    again = client.post("/api/worker/start").json()
    assert again["running"] is True
    assert again["started_at"] == response.json()["started_at"], "the same runner"


def test_stopping_runs_the_shutdown_jobs_once_more(probe: Probe) -> None:
    process.ensure_running()
    wait_until(lambda: probe.runs >= 2)

    process.stop(timeout=10)

    runs = probe.runs
    time.sleep(5 * TICK)
    assert probe.runs == runs, "stopped"
    assert process.current() is None
    assert process.status() == {"running": False, "mode": None, "jobs": []}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("autostart", [True, False])
def test_starting_a_timer_over_http_makes_sure_the_runner_runs(
    probe: Probe, staff: User, settings: Any, autostart: bool
) -> None:
    from timesheets.models import Project

    settings.WORKER_AUTOSTART = autostart
    project = Project.objects.create(code="ops", designation="Operations")
    client = Client()
    client.force_login(staff)

    created = client.post(
        "/api/timesheets", {"project": project.pk}, content_type="application/json"
    )
    assert created.status_code == 201
    assert process.current() is None, "a stopped timer needs no runner"
    started = client.post(f"/api/timesheets/{created.json()['id']}/start")
    assert started.status_code == 200
    assert (process.current() is not None) is autostart
    process.stop(timeout=10)

    again = client.post(
        "/api/timesheets", {"project": project.pk, "start": True}, content_type="application/json"
    )
    assert again.status_code == 201
    assert (process.current() is not None) is autostart


EXIT_WITH_A_RUNNER = """
import time
import django
django.setup()
from django.utils import timezone
from worker import process

process.ensure_running()
time.sleep(0.5)
print("exiting at", timezone.now().isoformat(), flush=True)
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_script_that_exits_stops_its_runner_with_a_final_accrual(staff: User) -> None:
    import json
    import os
    import subprocess
    import sys
    from datetime import datetime as Datetime

    from django.utils import timezone

    from tests.processes import ROOT, test_database_url
    from timesheets.models import Project, Timesheet
    from timesheets.services import timesheet_create

    project = Project.objects.create(code="ops", designation="Operations")
    now = timezone.now()
    timesheet = timesheet_create(owner=staff, project=project, description="", now=now, start=True)

    result = subprocess.run(
        [sys.executable, "-c", EXIT_WITH_A_RUNNER],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": test_database_url(),
            "LOG_FORMAT": "json",
            "WORKER_TICK_SECONDS": "0.2",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    (exiting,) = [line for line in result.stdout.splitlines() if line.startswith("exiting at")]
    exited_at = Datetime.fromisoformat(exiting.removeprefix("exiting at "))
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    (stopped,) = [event for event in events if event["event"] == "runner_stopped"]
    assert stopped["final_runs"] == 2, result.stderr  # the accrual, the heartbeat
    assert "Traceback" not in result.stderr
    watermark = Timesheet.objects.get(pk=timesheet.pk).accrued_until
    assert watermark is not None
    assert watermark >= exited_at, "the final accrual ran as the script exited"
