"""``manage.py runworker`` as its own process, against the test database."""

from __future__ import annotations

import signal
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from tests.invariants import assert_invariants
from tests.processes import Service, is_accrual, timesheets_locked
from timesheets.models import Project, Timesheet
from timesheets.services import timesheet_create

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.stop()


def test_sigterm_stops_gracefully_with_a_final_accrual(
    services: list[Service], alice: User, project: Project
) -> None:
    now = timezone.now()
    timesheet = timesheet_create(owner=alice, project=project, description="", now=now, start=True)
    worker = Service("runworker", env={"WORKER_TICK_SECONDS": "0.2"})
    services.append(worker)
    worker.wait_for("job_run", where=lambda event: is_accrual(event) and event["rows"] == 1)

    sent_at = timezone.now()
    worker.send(signal.SIGTERM)

    assert worker.wait(15) == 0
    stopped = worker.wait_for("runner_stopped")
    assert (stopped["final_runs"], stopped["abandoned"]) == (2, []), "the accrual, the heartbeat"
    finals = sorted(e["job"] for e in worker.events("job_run") if e.get("final"))
    assert finals == ["accrue_running_timesheets", "runner_heartbeat"]
    assert worker.events("stop_requested")[0]["signal"] == "SIGTERM"
    assert "Task was destroyed but it is pending" not in worker.output
    timesheet.refresh_from_db()
    assert timesheet.accrued_until is not None
    assert timesheet.accrued_until >= sent_at, "the final accrual came after the signal"
    assert_invariants(now=timezone.now())


def test_each_run_logs_its_numbers(services: list[Service], settings: Any) -> None:
    worker = Service("runworker", env={"WORKER_TICK_SECONDS": "0.1"})
    services.append(worker)

    run = worker.wait_for("job_run", where=lambda event: is_accrual(event) and event["run"] == 3)
    worker.send(signal.SIGINT)
    assert worker.wait(15) == 0

    assert run["job"] == "accrue_running_timesheets"
    assert {"rows", "duration_ms", "lag_ms", "timestamp", "level"} <= set(run)
    assert "request_id" not in run
    assert Timesheet.objects.count() == 0


def test_metrics_are_served_on_the_metrics_port(services: list[Service]) -> None:
    import urllib.request

    from tests.processes import free_port

    port = free_port()
    worker = Service("runworker", "--metrics-port", str(port), env={"WORKER_TICK_SECONDS": "0.1"})
    services.append(worker)
    worker.wait_for("job_run", where=lambda event: is_accrual(event) and event["run"] == 3)

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body = response.read().decode()
    listening = listening_addresses(port)
    worker.send(signal.SIGTERM)
    assert worker.wait(15) == 0

    runs = [
        line
        for line in body.splitlines()
        if line.startswith('worker_job_runs_total{job="accrue_running_timesheets"')
    ]
    assert runs, body
    assert float(runs[0].rsplit(" ", 1)[1]) >= 3
    served = worker.events("metrics_served")[0]
    assert (served["host"], served["port"]) == ("127.0.0.1", port)
    assert listening == {"127.0.0.1"}, "not on every interface"


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the IPv4 sockets listening on ``port``, from the kernel's table."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, local_port = local.split(":")
        if int(local_port, 16) == port and state == "0A":  # TCP_LISTEN
            found.add(socket.inet_ntoa(struct.pack("<I", int(address, 16))))
    return found


def test_a_taken_metrics_port_stops_it_with_one_clear_line(services: list[Service]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = Service("runworker", "--metrics-port", str(port), env={"SECRET_KEY": "s" * 50})
        services.append(worker)

        assert worker.wait(30) == 1
    assert worker.output.strip().splitlines() == [
        f"CommandError: Cannot serve metrics on 127.0.0.1:{port}: Address already in use. "
        "Choose another --metrics-port (WORKER_METRICS_PORT) or --metrics-host."
    ]


STOP_BOUND = 25.0  # seconds from SIGTERM to exit, whatever the jobs wait for: the README's


def test_sigterm_during_a_blocked_accrual_stops_within_the_bound(
    services: list[Service], alice: User, project: Project
) -> None:
    timesheet_create(owner=alice, project=project, description="", now=timezone.now(), start=True)
    worker = Service("runworker", env={"WORKER_TICK_SECONDS": "0.2"})
    services.append(worker)
    worker.wait_for("job_run", where=lambda event: is_accrual(event) and event["rows"] == 1)

    with timesheets_locked():
        time.sleep(0.5)  # the next accrual, due within 0.2 s, now waits for the lock
        sent_at = time.monotonic()
        worker.send(signal.SIGTERM)
        code = worker.wait(STOP_BOUND + 5)
        stopped_in = time.monotonic() - sent_at

    assert code == 0, worker.output
    assert stopped_in < STOP_BOUND, worker.output
    deferred = worker.events("job_deferred")
    assert deferred, f"the accrual was blocked, and gave up:\n{worker.output}"
    assert "busy with other writers" in deferred[0]["reason"], deferred
    assert not worker.events("job_failed"), worker.output
    assert worker.events("runner_stopped")
