"""The HTTP API under load: the async API on uvicorn against sync views on gunicorn.

Each stack is started once and loaded at every connection level in two scenarios:

- ``idle``: only the simulated people's timesheets exist. On uvicorn the runner accrues them
  every ``accrual_tick`` seconds; gunicorn has no runner.
- ``accrual``: ``accrual_rows`` more people have a running timesheet, and the accrual job runs
  every ``accrual_tick`` seconds over all of them while the load runs: in uvicorn's runner, on
  the serving event loop; for gunicorn, in a ``runworker`` process beside it, as a sync
  deployment runs its periodic jobs outside the web process.

How many accruals ran during each level, and how long they took, is read from the runner's
Prometheus metrics before and after the level.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from bench import rows, servers
from bench.load import Person, generate, summarize
from bench.stats import rounded
from timesheets.models import Project
from timesheets.services import api_token_create, timesheet_create

STACKS = ("asgi", "wsgi")
SCENARIOS = ("idle", "accrual")
ACCRUAL_JOB = "accrue_running_timesheets"
# The servers under load serve /metrics to this token only; it lives as long as the run.
METRICS_TOKEN = secrets.token_urlsafe(32)
PERSON_PREFIX = "person"  # usernames of the simulated people


def create_people(count: int, project: Project) -> list[Person]:
    """``count`` people, each with a token and a stopped timesheet, made by the services."""
    now = timezone.now()
    people = []
    for index in range(count):
        user, _ = User.objects.get_or_create(username=f"{PERSON_PREFIX}{index:04d}")
        token = api_token_create(user=user, name="bench", expires_at=None, now=now)
        timesheet = timesheet_create(owner=user, project=project, description="bench", now=now)
        people.append(Person(token=token.secret, timesheet_id=timesheet.pk))
    return people


def _metrics(url: str | None) -> dict[str, float]:
    """The accrual job's runs, rows and seconds so far, from a Prometheus endpoint."""
    totals = {"runs": 0.0, "rows": 0.0, "seconds": 0.0}
    if url is None:
        return totals
    authorized = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    scrape = urllib.request.Request(url, headers=authorized)  # noqa: S310  (our server)
    with urllib.request.urlopen(scrape, timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("job") != ACCRUAL_JOB:
                continue
            if sample.name == "worker_job_runs_total" and sample.labels["outcome"] == "success":
                totals["runs"] += sample.value
            elif sample.name == "worker_job_rows_total":
                totals["rows"] += sample.value
            elif sample.name == "worker_job_run_duration_seconds_sum":
                totals["seconds"] += sample.value
    return totals


@contextlib.contextmanager
def _running(process: servers.Process, url: str) -> Iterator[servers.Process]:
    try:
        process.start()
        process.wait_until_answering(url)
        yield process
    finally:
        process.stop()


def _level(
    *,
    url: str,
    people: list[Person],
    seconds: float,
    warmup: float,
    server: servers.Process,
    worker: servers.Process | None,
    metrics_url: str | None,
) -> dict[str, Any]:
    accruals_before = _metrics(metrics_url)
    server_before = server.cpu_seconds()
    worker_before = worker.cpu_seconds() if worker is not None else 0.0
    busy_before, total_before = servers.machine_busy_seconds()
    started = time.perf_counter()
    load = asyncio.run(generate(base_url=url, people=people, seconds=seconds, warmup=warmup))
    busy_after, total_after = servers.machine_busy_seconds()
    elapsed = time.perf_counter() - started
    server_cpu = server.cpu_seconds() - server_before
    worker_cpu = worker.cpu_seconds() - worker_before if worker is not None else None
    accruals_after = _metrics(metrics_url)
    accrual = {key: accruals_after[key] - accruals_before[key] for key in accruals_before}
    return {
        **summarize(load),
        "server_cpu_seconds": rounded(server_cpu, 2),
        "worker_cpu_seconds": rounded(worker_cpu, 2),
        "machine_busy": rounded((busy_after - busy_before) / (total_after - total_before), 3),
        # Every process on the machine, ours or not: how much of the 2 cores was in use.
        "cores_busy": rounded((busy_after - busy_before) / elapsed, 2),
        "accrual_runs": int(accrual["runs"]),
        "accrual_rows": int(accrual["rows"]),
        "accrual_seconds": rounded(accrual["seconds"], 3),
    }


def measure(
    *,
    project: Project,
    seconds: float,
    warmup: float,
    levels: list[int],
    threads: int,
    pool_size: int,
    accrual_rows: int,
    accrual_tick: float,
    rounds: int = 1,
) -> list[dict[str, Any]]:
    """Each stack is started once per round and loaded at every level, first idle, then
    accruing. The stacks take turns, in the opposite order every other round, so that a machine
    getting slower or faster during the run weighs on both alike."""
    rows.clear()
    people = create_people(max(levels), project)
    env = {
        **os.environ,
        "DATABASE_POOL_SIZE": str(pool_size),
        # As many requests at once as gunicorn has threads.
        "REQUEST_THREADS": str(threads),
        "WORKER_TICK_SECONDS": repr(accrual_tick),
        "METRICS_TOKEN": METRICS_TOKEN,
    }
    results = []
    turns = [
        (turn, stack)
        for turn in range(1, rounds + 1)
        for stack in (STACKS if turn % 2 else tuple(reversed(STACKS)))
    ]
    for turn, stack in turns:
        rows.remove_owned()
        rows.settle()
        port = servers.free_port()
        url = f"http://127.0.0.1:{port}"
        if stack == "asgi":
            server = servers.asgi(port=port, env=env)
        else:
            server = servers.wsgi(port=port, threads=threads, env=env)
        with _running(server, f"{url}/healthz"):
            for scenario in SCENARIOS:
                with contextlib.ExitStack() as scenario_stack:
                    worker = None
                    metrics_url = f"{url}/metrics" if stack == "asgi" else None
                    if scenario == "accrual":
                        rows.ensure_running(
                            rows=accrual_rows, project_id=project.pk, now=timezone.now()
                        )
                        rows.settle()
                        if stack == "wsgi":
                            metrics_port = servers.free_port()
                            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
                            worker = scenario_stack.enter_context(
                                _running(
                                    servers.worker(
                                        env={**env, "WORKER_METRICS_PORT": str(metrics_port)}
                                    ),
                                    metrics_url,
                                )
                            )
                    for level in levels:
                        result = _level(
                            url=url,
                            people=people[:level],
                            seconds=seconds,
                            warmup=warmup,
                            server=server,
                            worker=worker,
                            metrics_url=metrics_url,
                        )
                        results.append(
                            {
                                "round": turn,
                                "scenario": scenario,
                                "stack": stack,
                                "connections": level,
                                **result,
                            }
                        )
    return results
