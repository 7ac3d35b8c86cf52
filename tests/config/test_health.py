"""Liveness, readiness and metrics, in process and under uvicorn."""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import signal
import string
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import OperationalError, connection
from django.db.models import QuerySet
from django.test import AsyncClient, Client
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families

from config import health, metrics
from tests.processes import ROOT, Service, free_port
from worker import process
from worker.registry import Job
from worker.runner import Runner


def get(url: str, **headers: str) -> tuple[int, bytes]:
    try:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def idle_runner() -> None:
    async def idle(now: datetime) -> int:
        return 0

    process.set_factory(lambda: Runner(jobs=[Job(name="idle", function=idle, interval=0.05)]))


class TestReadiness:
    @pytest.mark.django_db
    async def test_ready_when_the_database_answers_and_is_migrated(self) -> None:
        response = await AsyncClient().get("/readyz")

        assert response.status_code == 200
        assert response.json() == {
            "status": "ready",
            "checks": {
                "database": "ok",
                "migrations": "ok",
                "writes": "ok",
                "disk": "ok",
                "worker": "not run by this process",
            },
        }

    @pytest.mark.django_db(transaction=True)
    def test_unready_while_migrations_are_pending(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(health, "_migrated", False)
        call_command("migrate", "timesheets", "zero", verbosity=0)
        try:
            response = Client().get("/readyz")
        finally:
            call_command("migrate", verbosity=0)

        assert response.status_code == 503
        body = response.json()
        assert body["failing"] == "migrations"
        assert re.fullmatch(r"\d+ migrations are not applied: run migrate\.", body["detail"])
        assert Client().get("/readyz").status_code == 200

    @pytest.mark.django_db(transaction=True)
    def test_unready_while_the_database_refuses_writes(self) -> None:
        read_only, read_write = (
            ("PRAGMA query_only = ON", "PRAGMA query_only = OFF")
            if connection.vendor == "sqlite"
            else (
                "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
                "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
            )
        )
        with connection.cursor() as cursor:
            cursor.execute(read_only)
        try:
            response = Client().get("/readyz")
        finally:
            with connection.cursor() as cursor:
                cursor.execute(read_write)

        assert response.status_code == 503
        body = response.json()
        assert body["failing"] == "writes"
        assert re.fullmatch(
            r"The database refuses writes: (attempt to write a readonly database"
            r"|cannot execute UPDATE in a read-only transaction)",
            body["detail"],
        )
        assert Client().get("/readyz").status_code == 200

    @pytest.mark.django_db
    def test_unready_when_an_embedded_database_s_disk_is_nearly_full(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real = shutil.disk_usage(ROOT)
        nearly_full = real._replace(free=3 * 2**20 + 2**19)
        monkeypatch.setattr(shutil, "disk_usage", lambda path: nearly_full)

        response = Client().get("/readyz")

        if connection.vendor != "sqlite":
            # PostgreSQL's disk is the server's, not this host's: its refusal of writes tells.
            assert response.status_code == 200
            return
        assert response.status_code == 503
        assert response.json()["failing"] == "disk"
        assert response.json()["detail"] == (
            "The disk holding the database has 3.5 MiB free, under 8 MiB: free some space."
        )

    @pytest.mark.django_db
    @pytest.mark.usefixtures("idle_runner")
    async def test_where_the_lifespan_runs_the_worker_it_must_be_running(
        self, settings: Any
    ) -> None:
        settings.WORKER_AUTOSTART = True
        process.mark_serving_loop(asyncio.get_running_loop())

        down = await AsyncClient().get("/readyz")
        process.ensure_running()
        await asyncio.sleep(0.05)
        up = await AsyncClient().get("/readyz")
        await process.astop()

        assert down.status_code == 503
        assert down.json() == {
            "status": "unavailable",
            "failing": "worker",
            "detail": "The periodic-job runner is not running in this process.",
        }
        assert up.status_code == 200
        assert up.json()["checks"]["worker"] == "ok"

    @pytest.mark.slow
    def test_unready_without_a_database_while_still_alive(self, tmp_path: Path) -> None:
        port = free_port()
        missing = tmp_path / "no-such-directory" / "db.sqlite3"
        server = Service(
            "serve",
            "--port",
            str(port),
            "--no-migrate",
            env={"DATABASE_URL": f"sqlite:///{missing}"},
        )
        try:
            server.wait_for_http(f"http://127.0.0.1:{port}/healthz")
            alive, _ = get(f"http://127.0.0.1:{port}/healthz")
            status, body = get(f"http://127.0.0.1:{port}/readyz")
            api_status, api_body = get(
                f"http://127.0.0.1:{port}/api/projects", Authorization="Bearer tsk_anything"
            )
        finally:
            server.send(signal.SIGTERM)
            server.wait(15)
            server.stop()

        assert alive == 200
        assert api_status == 503
        assert b"The database is unavailable right now" in api_body
        assert status == 503
        assert b'"failing": "database"' in body
        assert b"The database is not reachable: unable to open database file" in body


METRICS_TOKEN = "scraper-token-0123456789"


@pytest.fixture
def scraper(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Client:
    """A client with the metrics token, and a count of running timesheets not yet read."""
    settings.METRICS_TOKEN = METRICS_TOKEN
    monkeypatch.setattr(metrics.running_timesheets, "_read_at", None)
    return Client(headers={"Authorization": f"Bearer {METRICS_TOKEN}"})


def start_one(owner: Any, project: Any) -> None:
    from timesheets.services import timesheet_create, timesheet_start

    now = datetime.now().astimezone()
    timesheet_start(
        timesheet_id=timesheet_create(owner=owner, project=project, description="", now=now).pk,
        now=now,
    )


@pytest.mark.django_db
class TestMetrics:
    def test_prometheus_text_with_the_runner_and_the_running_count(
        self, scraper: Client, alice: Any, project: Any
    ) -> None:
        start_one(alice, project)
        before = samples(scraper.get("/metrics").content.decode())
        Client().get("/healthz")

        response = scraper.get("/metrics")

        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain; version=")
        after = samples(response.content.decode())
        assert after[("timesheets_running", frozenset())] == 1.0
        ok = ("http_requests_total", frozenset({("method", "GET"), ("status", "200")}))
        assert after[ok] - before.get(ok, 0.0) == 2.0, "the /healthz and the first /metrics"

    @pytest.mark.parametrize(
        "authorization",
        [None, "Bearer wrong-token-0123456789", f"Basic {METRICS_TOKEN}", "Bearer"],
    )
    def test_only_the_metrics_token_gets_them(
        self, scraper: Client, authorization: str | None
    ) -> None:
        headers = {} if authorization is None else {"Authorization": authorization}

        response = Client(headers=headers).get("/metrics")

        assert response.status_code == 401
        assert response.json() == {
            "detail": "Metrics need 'Authorization: Bearer <METRICS_TOKEN>'."
        }
        assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert b"worker_job" not in response.content

    def test_without_a_token_set_no_metrics_are_served(self, settings: Any) -> None:
        settings.METRICS_TOKEN = ""

        response = Client(headers={"Authorization": "Bearer "}).get("/metrics")

        assert response.status_code == 404
        assert response.json() == {
            "detail": "Metrics are not served: set METRICS_TOKEN to serve them to a scraper."
        }

    def test_methods_a_client_makes_up_add_no_series(self, scraper: Client) -> None:
        scraper.get("/metrics")
        Client().generic("INVENTED0", "/healthz")  # the one series for every unknown method
        before = scraper.get("/metrics").content
        alphabet = string.ascii_uppercase + string.digits
        for _ in range(300):
            Client().generic("".join(random.choices(alphabet, k=12)), "/healthz")

        after = scraper.get("/metrics").content

        labels = {
            dict(labels)["method"]
            for (name, labels) in samples(after.decode())
            if name == "http_requests_total"
        }
        assert labels <= metrics.KNOWN_METHODS | {"other"}
        other = ("http_requests_total", frozenset({("method", "other"), ("status", "405")}))
        assert samples(after.decode())[other] - samples(before.decode())[other] == 300
        # The same series, only larger numbers in them.
        assert len(after) - len(before) < 100

    def test_the_running_count_is_read_once_per_max_age(
        self, scraper: Client, alice: Any, bob: Any, project: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        clock = FakeClock()
        monkeypatch.setattr(metrics.running_timesheets, "_clock", clock)
        start_one(alice, project)

        def scrape() -> tuple[float, int]:
            with CaptureQueriesContext(connection) as queries:
                body = scraper.get("/metrics").content.decode()
            return samples(body)[("timesheets_running", frozenset())], len(queries)

        first = scrape()
        start_one(bob, project)
        clock.now += metrics.running_timesheets.max_age - 0.001
        cached = [scrape() for _ in range(5)]
        clock.now += 0.001
        fresh = scrape()

        assert first == (1.0, 1)
        assert cached == [(1.0, 0)] * 5, "no query while the count is fresh"
        assert fresh == (2.0, 1)

    def test_an_unreachable_database_leaves_the_count_out_until_it_is_due(
        self, scraper: Client, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        clock = FakeClock()
        monkeypatch.setattr(metrics.running_timesheets, "_clock", clock)
        attempts = 0

        def unreachable(*args: Any, **kwargs: Any) -> int:
            nonlocal attempts
            attempts += 1
            raise OperationalError("connection refused")

        monkeypatch.setattr(QuerySet, "count", unreachable)

        bodies = [scraper.get("/metrics").content.decode() for _ in range(3)]
        clock.now += metrics.running_timesheets.max_age
        scraper.get("/metrics")

        assert all("worker_job_runs_total" in body for body in bodies)
        assert all("timesheets_running" not in body for body in bodies)
        assert attempts == 2, "one attempt per max age, however many scrapes"


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[Service, int, Path]]:
    port = free_port()
    shared = tmp_path / "metrics"
    server = Service(
        "serve",
        "--port",
        str(port),
        "--workers",
        "2",
        "--no-migrate",
        env={
            "WORKER_TICK_SECONDS": "0.05",
            "PROMETHEUS_MULTIPROC_DIR": str(shared),
            "METRICS_TOKEN": METRICS_TOKEN,
        },
    )
    yield server, port, shared
    server.stop()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_uvicorn_workers_report_one_set_of_metrics(
    two_workers: tuple[Service, int, Path],
) -> None:
    server, port, _ = two_workers
    give_up = time.monotonic() + 30
    while len({e["process"] for e in server.events("runner_started")}) < 2:
        assert time.monotonic() < give_up, server.output
        time.sleep(0.05)
    time.sleep(0.5)

    def runs_by_process() -> Counter[int]:
        return Counter(
            e["process"]
            for e in server.events("job_run")
            if e["job"] == "accrue_running_timesheets"
        )

    before = runs_by_process()
    status, body = get(f"http://127.0.0.1:{port}/metrics", Authorization=f"Bearer {METRICS_TOKEN}")
    after = runs_by_process()

    assert status == 200
    key = (
        "worker_job_runs_total",
        frozenset({("job", "accrue_running_timesheets"), ("outcome", "success")}),
    )
    scraped = samples(body.decode())[key]
    assert len(before) == 2, "both workers run the jobs"
    assert before.total() <= scraped <= after.total(), "every process's runs, summed"
    assert scraped > max(after.values()), "more than any one process ran"
