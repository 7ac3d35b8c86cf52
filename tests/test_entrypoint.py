"""docker/entrypoint.sh, run as the container runs it, against the test database.

Same command line as the image (``docker/entrypoint.sh <role>`` from /app, the virtual
environment first on PATH), same environment as compose.yaml gives the service; only the
database is the local test database and the port a free one.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from tests import processes
from tests.invariants import assert_invariants
from tests.processes import ROOT, Service, free_port, is_accrual
from tests.test_compose import load_compose, seconds, service_environment
from tests.test_dockerfile import healthcheck_command
from timesheets.models import Project
from timesheets.services import timesheet_create

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
VIRTUAL_ENVIRONMENT = Path(sys.prefix) / "bin"
GRACE_PERIOD = seconds(load_compose()["services"]["web"]["stop_grace_period"])
STARTUP_TIMEOUT = 60.0  # seconds: Django, the database wait and migrations come first
REQUEST_TIMEOUT = 5.0  # seconds
PASSWORD = "correct-horse-battery-staple"  # must never be printed
UNREACHABLE = f"postgres://timesheets:{PASSWORD}@127.0.0.1:1/timesheets"
METRICS_TOKEN = "scraper-token-0123456789"
STALE_METRICS = "counter_99999.db"  # what a process of an earlier run left behind


class Container(Service):
    """The entrypoint with its arguments, in exactly the environment given (nothing of the
    test run's own environment leaks in)."""

    def __init__(self, *arguments: str, env: Mapping[str, str]) -> None:
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115  (closed in stop())
            mode="w+", suffix=".log", delete=False
        )
        self.process = subprocess.Popen(
            [str(ENTRYPOINT), *arguments],
            cwd=ROOT,
            env=dict(env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stop() ends the whole group, uvicorn workers included
        )

    def plain_lines(self) -> list[str]:
        """Output lines that are not JSON log events."""
        lines = []
        for line in self.output.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if line.strip() and not isinstance(event, dict):
                lines.append(line)
        return lines


@pytest.fixture(scope="module")
def static_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image collects the static files at build time; the tests do it once here."""
    root = tmp_path_factory.mktemp("static")
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT,
        env={
            "PATH": os.environ["PATH"],
            "DEBUG": "false",
            "SECRET_KEY": "collectstatic-only",
            "STATIC_ROOT": str(root),
        },
        check=True,
        capture_output=True,
        timeout=120,
    )
    return root


@pytest.fixture
def environment_of(tmp_path: Path, static_root: Path) -> Callable[[str], dict[str, str]]:
    """A compose service's container environment: the image's ENV, then compose.yaml's, with
    the test database in place of the db service."""

    def environment(service: str) -> dict[str, str]:
        return {
            # The image
            "PATH": f"{VIRTUAL_ENVIRONMENT}{os.pathsep}{os.environ['PATH']}",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
            "PORT": str(free_port()),
            "STATIC_ROOT": str(static_root),
            # compose.yaml
            **service_environment(service),
            "DATABASE_URL": processes.test_database_url(),
            "SECRET_KEY": secrets.token_urlsafe(50),
            # A short tick, so that the test sees accruals within a second.
            "WORKER_TICK_SECONDS": "0.2",
        }

    return environment


@pytest.fixture
def environment(environment_of: Callable[[str], dict[str, str]]) -> dict[str, str]:
    return environment_of("web")


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    started: list[Container] = []
    yield started
    for container in started:
        container.stop()


def get(port: int | str, path: str, **headers: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers),
            timeout=REQUEST_TIMEOUT,
        ) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_until_serving(container: Container, port: str) -> None:
    give_up = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < give_up:
        if container.process.poll() is not None:
            break
        try:
            if get(port, "/healthz")[0] == 200:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.1)
    raise AssertionError(f"/healthz never answered 200; the container said:\n{container.output}")


def unapplied_migrations(database_url: str) -> list[str]:
    plan = subprocess.run(
        [sys.executable, "manage.py", "showmigrations", "--plan"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "[X]" in plan or "[ ]" in plan, plan
    return [line for line in plan.splitlines() if line.startswith("[ ]")]


def test_web_serves_and_stops_gracefully_with_a_final_accrual(
    containers: list[Container],
    environment: dict[str, str],
    alice: User,
    project: Project,
) -> None:
    now = timezone.now()
    timesheet = timesheet_create(owner=alice, project=project, description="", now=now, start=True)
    metrics = Path(environment["PROMETHEUS_MULTIPROC_DIR"])
    metrics.mkdir()
    (metrics / STALE_METRICS).write_bytes(b"left by an earlier run")
    port = environment["PORT"]

    web = Container("web", env=environment)
    containers.append(web)
    wait_until_serving(web, port)

    status, body = get(port, "/readyz")
    assert status == 200, body
    assert json.loads(body)["status"] == "ready"
    # DEBUG is off: the admin's pages need the collected, hashed static files.
    assert get(port, "/admin/login/")[0] == 200
    assert not (metrics / STALE_METRICS).exists(), "a stale metrics file would skew counters"
    # exec: the process the container started is uvicorn itself, and gets its signals.
    command_line = Path(f"/proc/{web.process.pid}/cmdline").read_bytes().split(b"\0")
    assert command_line[1].endswith(b"/uvicorn"), command_line
    assert b"--no-access-log" in command_line
    # The image's HEALTHCHECK, run where the image runs it.
    check = subprocess.run(healthcheck_command(), env=environment, check=False, timeout=30)
    assert check.returncode == 0
    web.wait_for("job_run", where=lambda event: is_accrual(event) and event["rows"] == 1)
    assert web.events("runner_hosted")[0]["mode"] == "serving_loop"

    sent_at = timezone.now()
    web.send(signal.SIGTERM)

    # uvicorn re-raises the signal after a clean shutdown: ending by SIGTERM is the norm.
    assert web.wait(GRACE_PERIOD) == -signal.SIGTERM
    stopped = web.wait_for("runner_stopped")
    assert (stopped["final_runs"], stopped["abandoned"]) == (2, []), "the accrual, the heartbeat"
    assert "Task was destroyed but it is pending" not in web.output
    assert "Traceback" not in web.output
    assert web.plain_lines() == [], "LOG_FORMAT=json: every line is one JSON event"
    timesheet.refresh_from_db()
    assert timesheet.accrued_until is not None
    assert timesheet.accrued_until >= sent_at, "the final accrual came after the signal"
    assert_invariants(now=timezone.now())
    # Once the server is gone, the same health check fails.
    check = subprocess.run(
        healthcheck_command(), env=environment, check=False, capture_output=True, timeout=30
    )
    assert check.returncode != 0


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_migrate_on_start_applies_the_migrations_before_serving(
    containers: list[Container], environment: dict[str, str], tmp_path: Path, value: str
) -> None:
    database_url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    assert unapplied_migrations(database_url) != []
    environment |= {"DATABASE_URL": database_url, "MIGRATE_ON_START": value}

    web = Container("web", env=environment)
    containers.append(web)
    wait_until_serving(web, environment["PORT"])

    assert unapplied_migrations(database_url) == []
    status, body = get(environment["PORT"], "/readyz")
    assert status == 200, body
    web.send(signal.SIGTERM)
    assert web.wait(GRACE_PERIOD) == -signal.SIGTERM


def test_without_migrate_on_start_web_leaves_the_schema_alone(
    containers: list[Container], environment: dict[str, str], tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    environment |= {"DATABASE_URL": database_url, "WORKER_AUTOSTART": "false"}
    assert "MIGRATE_ON_START" not in environment

    web = Container("web", env=environment)
    containers.append(web)
    wait_until_serving(web, environment["PORT"])

    assert len(unapplied_migrations(database_url)) > 0
    assert "Applying" not in web.output
    web.send(signal.SIGTERM)
    assert web.wait(GRACE_PERIOD) == -signal.SIGTERM


def test_the_migrate_role_applies_the_migrations_and_exits(
    containers: list[Container], environment_of: Callable[[str], dict[str, str]], tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    environment = environment_of("migrate") | {"DATABASE_URL": database_url}

    migrate = Container("migrate", env=environment)
    containers.append(migrate)

    assert migrate.wait(STARTUP_TIMEOUT) == 0, migrate.output
    assert unapplied_migrations(database_url) == []


def test_several_web_workers_log_alike_and_share_their_metrics(
    containers: list[Container], environment: dict[str, str]
) -> None:
    environment["WEB_CONCURRENCY"] = "2"
    environment["METRICS_TOKEN"] = METRICS_TOKEN
    port = environment["PORT"]
    web = Container("web", env=environment)
    containers.append(web)
    wait_until_serving(web, port)
    give_up = time.monotonic() + STARTUP_TIMEOUT
    while len({event["process"] for event in web.events("runner_started")}) < 2:
        assert time.monotonic() < give_up, web.output
        time.sleep(0.05)

    status, body = get(port, "/metrics", Authorization=f"Bearer {METRICS_TOKEN}")
    web.send(signal.SIGTERM)
    web.wait(GRACE_PERIOD)

    assert status == 200
    assert b'worker_job_runs_total{job="accrue_running_timesheets",outcome="success"}' in body
    # uvicorn's own process (started, stopping, its workers' ends) logs JSON too.
    assert web.plain_lines() == []
    supervisor = [e for e in web.events() if e.get("logger", "").startswith("uvicorn")]
    assert {e["process"] for e in supervisor} >= {web.process.pid}


def test_the_worker_role_runs_the_jobs_until_sigterm(
    containers: list[Container], environment_of: Callable[[str], dict[str, str]]
) -> None:
    environment = environment_of("worker")
    metrics = Path(environment["PROMETHEUS_MULTIPROC_DIR"])

    worker = Container("worker", env=environment)
    containers.append(worker)
    worker.wait_for("job_run")
    assert metrics.is_dir(), "prometheus-client writes its files there"

    worker.send(signal.SIGTERM)
    assert worker.wait(GRACE_PERIOD) == 0
    stopped = worker.wait_for("runner_stopped")
    assert (stopped["final_runs"], stopped["abandoned"]) == (2, []), "the accrual, the heartbeat"
    assert worker.plain_lines() == []


@pytest.mark.parametrize("role", ["web", "worker", "migrate", None])
def test_an_unreachable_database_stops_the_start_with_one_clear_line(
    containers: list[Container], environment: dict[str, str], role: str | None
) -> None:
    environment |= {"DATABASE_URL": UNREACHABLE, "DATABASE_WAIT_SECONDS": "1"}
    started = time.monotonic()

    container = Container(*([role] if role else []), env=environment)
    containers.append(container)

    assert container.wait(20) == 1
    assert time.monotonic() - started < 10
    (message,) = container.plain_lines()
    assert message.startswith(
        "CommandError: Database at 127.0.0.1:1/timesheets not reachable after 1 s: "
    )
    assert "Connection refused" in message
    assert "Traceback" not in container.output
    assert PASSWORD not in container.output
    assert "Uvicorn running" not in container.output


def test_any_other_command_runs_as_given_without_waiting(
    containers: list[Container], environment: dict[str, str]
) -> None:
    environment |= {"DATABASE_URL": UNREACHABLE, "DATABASE_WAIT_SECONDS": "30"}

    container = Container(
        "python", "-c", "import sys; print(sys.argv[1:])", "one", "two words", env=environment
    )
    containers.append(container)

    assert container.wait(10) == 0
    assert container.output == "['one', 'two words']\n"


@pytest.mark.parametrize("role", ["wbe", "serve"])
def test_an_unknown_role_stops_with_one_line_listing_the_roles(
    containers: list[Container], environment: dict[str, str], role: str
) -> None:
    environment |= {"DATABASE_URL": UNREACHABLE, "DATABASE_WAIT_SECONDS": "30"}

    container = Container(role, env=environment)
    containers.append(container)

    assert container.wait(10) == 2
    assert container.plain_lines() == [
        f"Unknown role '{role}': use web (the default), worker or migrate, or a command to "
        "run, such as python manage.py shell."
    ]
