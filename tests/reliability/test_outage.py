"""A database outage: the test's own PostgreSQL cluster crashes for 10 s under a running service.

The service is ``manage.py serve`` (the API, with a runner in its event loop) and a separate
``manage.py runworker``, both ticking every second, with three timers running. While the
database is down the API answers 503 quickly with a clear message, ``/readyz`` says why, and
each runner keeps trying every tick while logging one error and then summaries. When the
database is back, each runner recovers within one tick, and the running timers hold exactly
the time that passed over the outage.

The last test drives the runner under virtual time: failing runs that wait for the database
are still retried every tick, which is what bounds the recovery.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from config.database import OUTAGE_TIMEOUT
from tests.pgcluster import PostgresCluster, postgres_cluster
from tests.processes import ROOT, Service, free_port
from tests.worker.support import VirtualTime, events
from worker.registry import Job
from worker.runner import FAILURE_SUMMARY_INTERVAL, Runner

OUTAGE = 10.0  # seconds the database is down
TICK = 1.0  # seconds between two accrual runs, in both processes
# A request during the outage waits at most OUTAGE_TIMEOUT for a connection; the rest is
# slack for a loaded machine.
ANSWER_BOUND = OUTAGE_TIMEOUT + 1.0  # seconds
# A runner tries every tick; the slack covers the server's start and the run itself.
RECOVERY_BOUND = TICK + 0.5  # seconds after the database was started again
METRICS_TOKEN = "scraper-token-0123456789"
UNAVAILABLE = "The database is unavailable right now; try again in a few seconds."

WORLD = """
import json
from django.contrib.auth.models import User
from django.utils import timezone
from timesheets.services import api_token_create, project_create, timesheet_create, timesheet_start

now = timezone.now()
project = project_create(code="acme", designation="ACME", now=now)
world = {"project": project.pk, "tokens": {}, "running": {}}
for name in ("alice", "bob", "carol", "sam"):
    user = User.objects.create_user(username=name, is_staff=name == "sam")
    token = api_token_create(user=user, name="outage", expires_at=None, now=now)
    world["tokens"][name] = token.secret
    if name != "sam":
        timesheet = timesheet_create(owner=user, project=project, description=name, now=now)
        world["running"][name] = timesheet_start(timesheet_id=timesheet.pk, now=now).pk
print(json.dumps(world))
"""

INVARIANTS = """
from django.utils import timezone
from tests.invariants import assert_invariants
from timesheets.models import Timesheet
assert_invariants(now=timezone.now())
print("invariants hold for", Timesheet.objects.count(), "timesheets")
"""


@dataclass
class Deployment:
    cluster: PostgresCluster
    web: Service
    worker: Service
    base: str
    world: dict[str, Any]

    def client(self, user: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.world['tokens'][user]}"} if user else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30.0)


def manage(url: str, *arguments: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url, "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def deployment() -> Iterator[Deployment]:
    with postgres_cluster() as cluster:
        cluster.create_database("timesheets")
        url = cluster.url("timesheets")
        manage(url, "migrate", "--verbosity", "0")
        world = json.loads(manage(url, "shell", "-c", WORLD).strip().splitlines()[-1])
        env = {
            "DATABASE_URL": url,
            "WORKER_TICK_SECONDS": str(TICK),
            "METRICS_TOKEN": METRICS_TOKEN,
        }
        port = free_port()
        web = Service("serve", "--port", str(port), "--no-migrate", env=env)
        worker = Service("runworker", env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            web.wait_for_http(f"{base}/healthz")
            yield Deployment(cluster, web, worker, base, world)
        finally:
            for service in (web, worker):
                service.stop()


def accrual_runs(service: Service, event: str = "job_run") -> list[dict[str, Any]]:
    return [e for e in service.events(event) if e.get("job") == "accrue_running_timesheets"]


def wait_for_another_accrual(service: Service) -> None:
    runs = len(accrual_runs(service))
    service.wait_for("job_run", where=lambda _: len(accrual_runs(service)) > runs)


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def logged_at(event: dict[str, Any]) -> datetime:
    return instant(event["timestamp"])


def requests_during_the_outage(deployment: Deployment) -> list[tuple[str, str, Any, str]]:
    """Every API operation, by a caller it would serve: (method, path, body, caller)."""
    alices = deployment.world["running"]["alice"]
    project = deployment.world["project"]
    return [
        ("GET", "/api/timesheets", None, "alice"),
        ("POST", "/api/timesheets", {"project": project, "start": True}, "alice"),
        ("GET", "/api/timesheets/current", None, "alice"),
        ("GET", f"/api/timesheets/{alices}", None, "alice"),
        ("POST", f"/api/timesheets/{alices}/start", None, "alice"),
        ("POST", f"/api/timesheets/{alices}/stop", None, "alice"),
        ("GET", "/api/projects", None, "alice"),
        ("POST", "/api/projects", {"code": "new", "designation": "New"}, "sam"),
        ("GET", "/api/worker", None, "sam"),
        ("POST", "/api/worker/start", None, "sam"),
    ]


@dataclass(frozen=True)
class Answer:
    method: str
    seconds: float
    response: httpx.Response


PROBES = ("/readyz", "/healthz", "/metrics")


async def during_the_outage(deployment: Deployment, *, seconds: float) -> list[Answer]:
    """Send every request and probe at once, again and again, for ``seconds``."""
    clients = {
        name: httpx.AsyncClient(
            base_url=deployment.base, headers={"Authorization": f"Bearer {token}"}, timeout=30.0
        )
        for name, token in {**deployment.world["tokens"], "scraper": METRICS_TOKEN}.items()
    }

    async def send(method: str, path: str, body: Any, caller: str) -> Answer:
        sent = time.monotonic()
        response = await clients[caller].request(method, path, json=body)
        return Answer(method, time.monotonic() - sent, response)

    answers: list[Answer] = []
    until = time.monotonic() + seconds
    try:
        while time.monotonic() < until:
            requests = [
                *requests_during_the_outage(deployment),
                *[
                    ("GET", path, None, "scraper" if path == "/metrics" else "alice")
                    for path in PROBES
                ],
            ]
            answers += await asyncio.gather(*(send(*request) for request in requests))
            await asyncio.sleep(0.2)
    finally:
        for client in clients.values():
            await client.aclose()
    return answers


@pytest.mark.slow
@pytest.mark.postgresql
def test_a_ten_second_database_outage(deployment: Deployment) -> None:
    web, worker = deployment.web, deployment.worker
    for service in (web, worker):
        service.wait_for("job_run", where=lambda e: e["job"] == "accrue_running_timesheets")
    clients = {name: deployment.client(name) for name in ("alice", "bob", "carol", "sam")}
    try:
        check_the_outage(deployment, clients)
    finally:
        for client in clients.values():
            client.close()


def check_the_outage(deployment: Deployment, clients: dict[str, httpx.Client]) -> None:
    web, worker = deployment.web, deployment.worker
    document = clients["alice"].get("/api/openapi.json").json()
    before = {
        name: clients[name].get(f"/api/timesheets/{pk}").json()
        for name, pk in deployment.world["running"].items()
    }
    assert all(timesheet["status"] == "running" for timesheet in before.values())

    down_at = datetime.now(UTC)
    deployment.cluster.crash()
    answers = asyncio.run(during_the_outage(deployment, seconds=OUTAGE))
    assert web.process.poll() is None, "the web process kept running"
    assert worker.process.poll() is None, "the worker kept running"
    back_at = datetime.now(UTC)
    deployment.cluster.start()

    # The API: 503, quickly, with the documented body and a Retry-After, for every operation.
    rounds = len(answers) // (len(requests_during_the_outage(deployment)) + len(PROBES))
    assert rounds >= OUTAGE / 2, "every request was tried every couple of seconds"
    for answer in answers:
        path = answer.response.url.path
        assert answer.seconds <= ANSWER_BOUND, (answer.method, path, answer.seconds)
        if path in PROBES:
            continue
        assert answer.response.status_code == 503, (answer.method, path, answer.response.text)
        assert answer.response.json() == {"detail": UNAVAILABLE}
        assert answer.response.headers["Retry-After"] == "5"
        template = path.replace(str(deployment.world["running"]["alice"]), "{timesheet_id}")
        assert "503" in document["paths"][template][answer.method.lower()]["responses"]
    for answer in answers:
        status, text = answer.response.status_code, answer.response.text
        if answer.response.url.path == "/readyz":
            assert status == 503
            assert answer.response.json()["failing"] == "database"
            assert "Connection refused" in answer.response.json()["detail"], text
        elif answer.response.url.path == "/healthz":
            assert status == 200
        elif answer.response.url.path == "/metrics":
            assert status == 200, text
    (*_, last_metrics) = [a.response.text for a in answers if a.response.url.path == "/metrics"]
    assert 'job_runs_total{job="accrue_running_timesheets",outcome="failure"}' in last_metrics

    # Each runner recovers within one tick of the database's return...
    recoveries = []
    for service in (web, worker):
        recovered = service.wait_for(
            "job_recovered", where=lambda e: e["job"] == "accrue_running_timesheets"
        )
        recoveries.append((logged_at(recovered) - back_at).total_seconds())
        assert recoveries[-1] <= RECOVERY_BOUND, recovered
        # ...having tried every tick meanwhile, and said so once, then in summaries.
        assert recovered["failures"] >= OUTAGE / TICK - 2, recovered
        (failed,) = accrual_runs(service, "job_failed")
        assert down_at <= logged_at(failed) <= back_at
        summaries = accrual_runs(service, "job_still_failing")
        assert len(summaries) <= OUTAGE / FAILURE_SUMMARY_INTERVAL + 1
        outage_events = [e for e in service.events() if down_at <= logged_at(e) <= back_at]
        tracebacks = [e for e in outage_events if "exception" in e]
        # One traceback per job that failed (the accrual, and any other job due meanwhile).
        failed_jobs = [e.get("job") for e in tracebacks if e["event"] == "job_failed"]
        assert len(failed_jobs) == len(tracebacks) == len(set(failed_jobs)), tracebacks
        assert "accrue_running_timesheets" in failed_jobs
        worker_events = [e for e in outage_events if e.get("logger") == "worker"]
        assert {e["event"] for e in worker_events} <= {"job_failed", "job_still_failing"}
        assert not [e for e in outage_events if e.get("logger") == "psycopg.pool"], (
            "no warning for each attempt to connect"
        )
    assert clients["alice"].get("/api/projects").status_code == 200
    # The figures docs/reliability.md reports; pytest -s shows them.
    print(  # noqa: T201
        f"{len(answers)} requests in {rounds} rounds during the outage; slowest answer "
        f"{max(a.seconds for a in answers):.3f} s; recovered {recoveries[0]:.3f} s (serve) and "
        f"{recoveries[1]:.3f} s (runworker) after the database was started again"
    )

    # The timers ran through the outage: after one more accrual in each process, each holds
    # exactly the time from its start to its watermark, which is past the outage.
    for service in (web, worker):
        wait_for_another_accrual(service)
    for name, pk in deployment.world["running"].items():
        now = clients[name].get(f"/api/timesheets/{pk}").json()
        assert now["status"] == "running"
        assert now["running_since"] == before[name]["running_since"]
        watermark, since = instant(now["accrued_until"]), instant(now["running_since"])
        assert timedelta(seconds=now["imputed_seconds"]) == watermark - since
        assert watermark > back_at
        stopped = clients[name].post(f"/api/timesheets/{pk}/stop").json()
        assert stopped["status"] == "stopped"
        ran = instant(stopped["updated_at"]) - since
        assert timedelta(seconds=stopped["imputed_seconds"]) == ran, "to the microsecond"
        assert ran > timedelta(seconds=OUTAGE)
    assert clients["alice"].get("/api/timesheets").json()["count"] == 1, "no write got through"
    for service in (web, worker):
        service.send(signal.SIGTERM)
        service.wait(30)
    checked = manage(deployment.cluster.url("timesheets"), "shell", "-c", INVARIANTS)
    assert "invariants hold for 3 timesheets" in checked


async def test_a_runner_waiting_on_a_dead_database_still_tries_every_tick(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = VirtualTime()
    outage_ends = 1010.25
    starts: list[float] = []

    async def accrue(now: datetime) -> int:
        starts.append(clock.now)
        if clock.now < outage_ends:
            await clock.sleep(OUTAGE_TIMEOUT)  # waiting for a connection that never comes
            raise ConnectionError("the database is down")
        return 1

    runner = Runner(
        jobs=[Job(name="accrue", function=accrue, interval=TICK)],
        clock=clock.clock,
        sleep=clock.sleep,
        wall_clock=clock.wall_clock,
        lag_probe_interval=3600.0,
        backoff_cap=1.0,
    )
    task = asyncio.create_task(runner.run())

    await clock.run_until(1013.5, actors=2)

    assert [round(start - 1000, 6) for start in starts] == [float(k) for k in range(14)]
    (recovered,) = events(caplog, "job_recovered")
    assert recovered["failures"] == 11
    assert starts[11] - outage_ends <= TICK, "the first run after the outage succeeded"
    runner.request_stop()
    await clock.finish(task)
