"""Web and worker processes whose clocks are wrong change nothing: one clock, the database's.

Each process runs under libfaketime (Debian's ``faketime`` package), which shifts what the
process reads as the time of day, by an offset it rereads from a file: a process can run ahead,
behind, or have its clock stepped back while it runs, as a time-sync correction would. The
database server and this test keep the true time. Timers are started and stopped over HTTP; the
time credited must equal the time that really passed between the requests, no run may lie in
the future or overlap another, and ``timesheets.integrity`` must find nothing.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User

from tests.processes import Service, free_port
from timesheets.integrity import check
from timesheets.models import Project, Segment, Timesheet
from timesheets.services import timesheet_create

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgresql,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("settings_limits"),
]

RUN_FOR = 2.0  # seconds each timer runs
HOUR = 3600  # seconds


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    if not found:
        pytest.fail("libfaketime is missing: apt-get install faketime (.ci/run installs it)")
    return found[0]


@dataclass
class Clock:
    """A process's clock: the true time shifted by an offset that may change while it runs."""

    file: Path

    def set(self, offset_seconds: int) -> None:
        self.file.write_text(f"{offset_seconds:+d}\n")

    def environment(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": libfaketime(),
            "FAKETIME_TIMESTAMP_FILE": str(self.file),
            "FAKETIME_NO_CACHE": "1",  # reread the offset at every reading
        }


@pytest.fixture
def make_clock(tmp_path: Path) -> Callable[[int], Clock]:
    def make(offset_seconds: int) -> Clock:
        clock = Clock(tmp_path / f"clock-{len(list(tmp_path.iterdir()))}")
        clock.set(offset_seconds)
        return clock

    return make


def assert_clock_is_off(event: dict[str, Any], *, by: int) -> None:
    """The process stamped its log event with its own clock: off by the offset it was given."""
    stamped = datetime.fromisoformat(event["timestamp"]).timestamp()
    assert abs(stamped - time.time() - by) < 60, (event["timestamp"], by)


@dataclass
class Stack:
    web: Service
    worker: Service
    base: str


@pytest.fixture
def stack(
    request: pytest.FixtureRequest, make_clock: Callable[[int], Clock]
) -> Iterator[tuple[Stack, Clock, Clock]]:
    web_offset, worker_offset = request.param
    web_clock, worker_clock = make_clock(web_offset), make_clock(worker_offset)
    port = free_port()
    # Both accrue: the web process's runner and the worker's, each with its own clock.
    env = {"WORKER_TICK_SECONDS": "0.2"}
    web = Service("serve", "--port", str(port), "--no-migrate", env=env | web_clock.environment())
    worker = Service("runworker", env=env | worker_clock.environment())
    try:
        base = f"http://127.0.0.1:{port}"
        web.wait_for_http(f"{base}/healthz")
        for service, offset in ((web, web_offset), (worker, worker_offset)):
            assert_clock_is_off(service.wait_for("job_run"), by=offset)
        yield Stack(web=web, worker=worker, base=base), web_clock, worker_clock
    finally:
        web.stop()
        worker.stop()


@dataclass
class Timed:
    """A request, with the true time just before it was sent and just after its answer."""

    sent: float
    answered: float
    body: dict[str, Any]


def post(client: httpx.Client, path: str) -> Timed:
    sent = time.time()
    response = client.post(path)
    answered = time.time()
    assert response.status_code == 200, response.text
    return Timed(sent=sent, answered=answered, body=response.json())


def credited_within(timesheet_id: int, *, started: Timed, stopped: Timed) -> None:
    """The time credited lies within what really passed between the two requests."""
    imputed = Timesheet.objects.get(pk=timesheet_id).imputed.total_seconds()
    shortest = stopped.sent - started.answered
    longest = stopped.answered - started.sent
    assert shortest <= imputed <= longest, (imputed, shortest, longest)


def two_timesheets(owner: User, project: Project) -> tuple[Timesheet, Timesheet]:
    return (
        timesheet_create(owner=owner, project=project, description="first"),
        timesheet_create(owner=owner, project=project, description="second"),
    )


def nothing_wrong() -> None:
    report = check()  # against the database's clock
    assert report.ok, report.examples
    assert not Timesheet.objects.filter(auto_stopped=True).exists()


@pytest.fixture
def client_of(
    token_for: Callable[[User], str],
) -> Callable[[Stack, User], httpx.Client]:
    def make(stack: Stack, user: User) -> httpx.Client:
        return httpx.Client(
            base_url=stack.base, headers={"Authorization": f"Bearer {token_for(user)}"}, timeout=30
        )

    return make


@pytest.mark.parametrize(
    "stack",
    [
        pytest.param((0, 300), id="worker-300s-ahead"),
        pytest.param((0, 13 * HOUR), id="worker-13h-ahead"),
        pytest.param((-HOUR, HOUR), id="web-1h-behind-worker-1h-ahead"),
        pytest.param((HOUR, -HOUR), id="web-1h-ahead-worker-1h-behind"),
    ],
    indirect=True,
)
def test_skewed_clocks_credit_exactly_the_real_time(
    stack: tuple[Stack, Clock, Clock],
    alice: User,
    project: Project,
    client_of: Callable[[Stack, User], httpx.Client],
) -> None:
    processes, _, _ = stack
    first, second = two_timesheets(alice, project)
    with client_of(processes, alice) as client:
        started = post(client, f"/api/timesheets/{first.pk}/start")
        time.sleep(RUN_FOR)
        replaced = post(client, f"/api/timesheets/{second.pk}/start")
        time.sleep(RUN_FOR)
        stopped = post(client, f"/api/timesheets/{second.pk}/stop")

    credited_within(first.pk, started=started, stopped=replaced)
    credited_within(second.pk, started=replaced, stopped=stopped)
    assert Segment.objects.get(timesheet=first).end_reason == Segment.EndReason.REPLACED
    nothing_wrong()


@pytest.mark.parametrize("stack", [pytest.param((0, 0), id="web-steps-back")], indirect=True)
def test_a_web_clock_stepping_back_two_minutes_changes_nothing(
    stack: tuple[Stack, Clock, Clock],
    alice: User,
    project: Project,
    client_of: Callable[[Stack, User], httpx.Client],
) -> None:
    processes, web_clock, _ = stack
    first, second = two_timesheets(alice, project)
    with client_of(processes, alice) as client:
        started = post(client, f"/api/timesheets/{first.pk}/start")
        time.sleep(RUN_FOR)
        web_clock.set(-120)
        replaced = post(client, f"/api/timesheets/{second.pk}/start")
        time.sleep(RUN_FOR)
        stopped = post(client, f"/api/timesheets/{second.pk}/stop")
        restarted = post(client, f"/api/timesheets/{first.pk}/start")
        time.sleep(RUN_FOR / 2)
        web_clock.set(0)
        ended = post(client, f"/api/timesheets/{first.pk}/stop")

    credited_within(second.pk, started=replaced, stopped=stopped)
    first_runs = list(Segment.objects.filter(timesheet=first).order_by("started_at"))
    assert len(first_runs) == 2
    for run, (began, finished) in zip(
        first_runs, [(started, replaced), (restarted, ended)], strict=True
    ):
        assert run.ended_at is not None
        length = (run.ended_at - run.started_at).total_seconds()
        assert finished.sent - began.answered <= length <= finished.answered - began.sent
    assert Timesheet.objects.get(pk=first.pk).imputed == sum(
        ((run.ended_at or run.started_at) - run.started_at for run in first_runs), timedelta(0)
    )
    nothing_wrong()
