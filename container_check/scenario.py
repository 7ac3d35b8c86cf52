"""What the check does with the running stack. Each step fails the check, with the reason, at
the first thing that does not hold."""

from __future__ import annotations

import os
import secrets
import signal
import time
from datetime import UTC, datetime
from typing import Any

from container_check.api import Api
from container_check.shell import CheckFailed, say, tail
from container_check.stack import Event, Stack

READY_TIMEOUT = 180.0  # seconds: the database, the migrations and web's start come first
HEALTHY_TIMEOUT = 60.0  # seconds: the image's health check runs every 15 s
ACCRUAL_TIMEOUT = 30.0  # seconds to see the watermark move, with WORKER_TICK_SECONDS=1
APP_UID = "10001"
USERS = ("ana", "bo", "chen")  # people with a timer of their own while the workers scale
WORKERS = 3
ACCRUAL_JOB = "accrue_running_timesheets"
POLL = 0.25  # seconds


def wait_until_ready(api: Api, *, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    answer: Any = None
    while time.monotonic() < deadline:
        try:
            status, answer = api.request("GET", "/readyz")
        except OSError as error:  # not listening yet
            status, answer = 0, str(error)
        if status == 200:
            return
        time.sleep(0.5)
    raise CheckFailed(f"/readyz did not answer 200 within {timeout:g} s; last answer: {answer}")


def _timestamp(event: Event) -> datetime:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00"))


def try_it(stack: Stack, address: str) -> tuple[Api, int]:
    """The README's "Try it" requests against web, with the same bodies and ids (a new
    stack's first project and timesheet are number 1); returns the admin's API."""
    stack.manage(
        "web",
        "createsuperuser",
        "--noinput",
        "--username=admin",
        "--email=admin@example.com",
        env={"DJANGO_SUPERUSER_PASSWORD": secrets.token_urlsafe(16)},
    )
    token = stack.manage("web", "create_api_token", "admin").stdout.strip()
    api = Api(address, token)
    project = api.expect(
        201, "POST", "/api/projects", '{"code": "acme", "designation": "ACME rollout"}'
    )
    started = api.expect(
        201, "POST", "/api/timesheets", '{"project": 1, "description": "Kick-off", "start": true}'
    )
    if (project["id"], started["id"], started["status"]) != (1, 1, "running"):
        raise CheckFailed(f"project {project['id']}, timesheet {started}: not the README's")
    current = api.expect(200, "GET", "/api/timesheets/current")
    if current["id"] != started["id"]:
        raise CheckFailed(f"/api/timesheets/current is {current['id']}, not {started['id']}")
    stopped = api.expect(200, "POST", "/api/timesheets/1/stop")
    if stopped["status"] != "stopped" or stopped["accumulated_seconds"] <= 0:
        raise CheckFailed(f"the stopped timesheet reads {stopped}")
    status, _ = api.request("GET", "/admin/login/")
    if status != 200:
        raise CheckFailed(f"the admin's login page answered {status}")
    uid = stack.compose("exec", "-T", "web", "id", "-u").stdout.strip()
    if uid != APP_UID:
        raise CheckFailed(f"web runs as uid {uid}, not {APP_UID}")
    say(f"try it: project {project['id']}, timesheet {started['id']} ran and stopped; uid {uid}")
    return api, int(project["id"])


def _people(stack: Stack, names: tuple[str, ...]) -> list[str]:
    """Create the users, each with an API token; return the tokens in the same order."""
    script = (
        "from django.contrib.auth import get_user_model\n"
        "from django.core.management import call_command\n"
        f"for name in {list(names)!r}:\n"
        "    get_user_model().objects.create_user(name)\n"
        "    call_command('create_api_token', name)\n"
    )
    tokens = stack.manage("web", "shell", "--no-imports", input=script).stdout.split()
    if len(tokens) != len(names):
        raise CheckFailed(f"expected {len(names)} tokens from the shell, got {tokens}")
    return tokens


def _watermark(api: Api, timesheet: int) -> datetime:
    answer = api.expect(200, "GET", f"/api/timesheets/{timesheet}")
    return datetime.fromisoformat(answer["accrued_until"].replace("Z", "+00:00"))


def _running_workers(stack: Stack) -> list[str]:
    return [c for c in stack.containers("worker") if stack.state(c)["Running"]]


def _accrues(stack: Stack, container: str, *, after: datetime | None = None) -> None:
    """Wait until the container has logged an accrual (after the moment given)."""
    stack.wait_for_event(
        container,
        lambda event: (
            event.get("event") == "job_run"
            and event.get("job") == ACCRUAL_JOB
            and (after is None or _timestamp(event) > after)
        ),
        what="an accrual" + (f" after {after:%H:%M:%S.%f}" if after else ""),
    )


def _wait_for_watermark_past(api: Api, timesheet: int, moment: datetime) -> datetime:
    deadline = time.monotonic() + ACCRUAL_TIMEOUT
    while (watermark := _watermark(api, timesheet)) <= moment:
        if time.monotonic() > deadline:
            raise CheckFailed(f"timesheet {timesheet}'s watermark stayed at {watermark}")
        time.sleep(0.5)
    return watermark


def scale_and_kill(stack: Stack, admin: Api, project: int) -> int:
    """Timers run, three workers accrue them, one is killed outright; the time stays exact.
    Returns how many timesheets are running."""
    apis = [admin, *(Api(admin.address, token) for token in _people(stack, USERS))]
    timesheets = [
        api.expect(201, "POST", "/api/timesheets", f'{{"project": {project}, "start": true}}')["id"]
        for api in apis
    ]
    stack.compose(
        "up", "--detach", "--no-build", "--no-deps", "--scale", f"worker={WORKERS}", "worker"
    )
    workers = _running_workers(stack)
    if len(workers) != WORKERS:
        raise CheckFailed(f"{len(workers)} workers run after --scale worker={WORKERS}")
    for worker in workers:
        _accrues(stack, worker)
    say(f"{len(timesheets)} timers run; {WORKERS} workers and web accrue them")
    (web,) = stack.containers("web")
    memory = stack.engine("stats", "--no-stream", "--format", "{{.MemUsage}}", web, workers[0])
    web_memory, worker_memory = (line.split(" / ")[0] for line in memory.stdout.splitlines())
    say(f"memory in use: web {web_memory}, a worker {worker_memory}")

    victim, *survivors = workers
    pid = stack.state(victim)["Pid"]
    killed_at = datetime.now(UTC)
    os.kill(int(pid), signal.SIGKILL)  # from outside: the process gets no warning
    for survivor in survivors:
        _accrues(stack, survivor, after=killed_at)
    after = _wait_for_watermark_past(admin, timesheets[0], killed_at)
    # compose.yaml's restart policy brings the killed worker back.
    deadline = time.monotonic() + ACCRUAL_TIMEOUT
    while not (state := stack.state(victim))["Running"] or state["Pid"] == pid:
        if time.monotonic() > deadline:
            raise CheckFailed(f"worker {victim[:12]} is not back after SIGKILL: {state}")
        time.sleep(POLL)
    _accrues(stack, victim, after=killed_at)
    say(
        f"SIGKILL to worker {victim[:12]}: the others went on accruing (to "
        f"{after:%H:%M:%S.%f}), and it came back and accrues again"
    )
    _wait_until_healthy(stack)
    check_timesheets(stack, "exec")
    return len(timesheets)


def _wait_until_healthy(stack: Stack) -> None:
    (web,) = stack.containers("web")
    deadline = time.monotonic() + HEALTHY_TIMEOUT
    while (health := stack.state(web).get("Health", {}).get("Status")) != "healthy":
        if time.monotonic() > deadline:
            raise CheckFailed(f"web's health check says {health} after {HEALTHY_TIMEOUT:g} s")
        time.sleep(1)


def check_timesheets(stack: Stack, how: str) -> None:
    """``manage.py check_timesheets``: every time invariant, in one snapshot, inside the
    stack: with ``exec`` in the running web container, with ``run`` in a new container once
    the app is stopped."""
    launcher = (
        ["exec", "-T", "web"] if how == "exec" else ["run", "--rm", "--no-deps", "-T", "worker"]
    )
    result = stack.compose(*launcher, "python", "manage.py", "check_timesheets", check=False)
    if result.returncode != 0:
        raise CheckFailed(
            "the time invariants do not hold:\n" + tail(result.stdout + result.stderr)
        )
    say("check_timesheets: " + " / ".join(line.strip() for line in result.stdout.splitlines()))


def graceful_stop(stack: Stack, running: int, grace: float) -> None:
    """SIGTERM: every worker, then web, finishes with a final accrual, well within the grace
    period; the last one, web's, moves every running timesheet."""
    workers = _running_workers(stack)
    started = time.monotonic()
    stack.compose("stop", "worker")
    for worker in workers:
        _final_accrual(stack, worker, "worker")
    say(f"{len(workers)} workers stopped on SIGTERM in {time.monotonic() - started:.1f} s")

    (web,) = stack.containers("web")
    signalled = datetime.now(UTC)
    started = time.monotonic()
    stack.compose("stop", "web")
    took = time.monotonic() - started
    if took >= grace:
        raise CheckFailed(f"web took {took:.1f} s to stop: it was killed at the grace period")
    final = _final_accrual(stack, web, "web")
    # The workers are gone: web's final accrual is the last, and catches up every timer.
    if _timestamp(final) < signalled or final["rows"] != running:
        raise CheckFailed(f"web's final accrual, {final}, is not of the {running} running timers")
    say(f"web stopped on SIGTERM in {took:.1f} s; its final accrual moved {running} timers")
    check_timesheets(stack, "run")


def _final_accrual(stack: Stack, container: str, role: str) -> Event:
    """The container's final accrual, once it has exited cleanly."""
    state = stack.state(container)
    # uvicorn ends by re-raising SIGTERM, which the kernel ignores for a container's first
    # process: a clean stop exits with 0 in every role.
    if state["Running"] or state["ExitCode"] != 0:
        raise CheckFailed(f"{role} {container[:12]} ended with {state['ExitCode']} on SIGTERM")
    events = stack.events(container)
    stopped = [event for event in events if event.get("event") == "runner_stopped"]
    final = [
        event
        for event in events
        if event.get("event") == "job_run"
        and event.get("job") == ACCRUAL_JOB
        and event.get("final")
    ]
    if not stopped or stopped[-1]["abandoned"] != [] or not final:
        raise CheckFailed(f"{role} {container[:12]} stopped without a final accrual: {stopped}")
    return final[-1]
