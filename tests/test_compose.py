"""compose.yaml: valid by the Compose specification, and the service graph the README promises."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from worker.runner import STOP_TIMEOUT

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose.yaml"
APP_SERVICES = ("migrate", "web", "worker")
SCHEMA_LOCATIONS = (
    ROOT.parent / "shared" / "schemas" / "compose-spec.json",
    Path("/work/shared/schemas/compose-spec.json"),
)
# ${NAME}, ${NAME:-default} and ${NAME-default}, as Compose interpolates them.
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")
DURATION = re.compile(r"^(?:(?P<minutes>\d+)m)?(?:(?P<seconds>\d+)s)?$")


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def interpolate(value: str) -> str:
    """The value as ``docker compose up`` sees it in an environment that sets nothing."""
    return VARIABLE.sub(lambda match: match["default"] or "", value).replace("$$", "$")


def service_environment(name: str, compose: dict[str, Any] | None = None) -> dict[str, str]:
    """The environment a service's container gets, with every variable at its default."""
    service = (compose or load_compose())["services"][name]
    return {key: interpolate(value) for key, value in service.get("environment", {}).items()}


def seconds(duration: str) -> int:
    match = DURATION.match(duration)
    assert duration, "an empty duration"
    assert match is not None, f"{duration!r} is not a duration like 30s or 1m30s"
    return int(match["minutes"] or 0) * 60 + int(match["seconds"] or 0)


def compose_schema() -> Path:
    """Where the Compose specification's JSON schema is: $COMPOSE_SCHEMA, else next to the
    repository, as .ci/run looks for it."""
    explicit = os.environ.get("COMPOSE_SCHEMA")
    if explicit:
        if not Path(explicit).is_file():
            pytest.fail(f"COMPOSE_SCHEMA={explicit} is not a file.")
        return Path(explicit)
    for candidate in SCHEMA_LOCATIONS:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(candidate) for candidate in SCHEMA_LOCATIONS)
    pytest.fail(
        f"The Compose specification schema (compose-spec.json) is not at {tried}; "
        "set COMPOSE_SCHEMA to its path."
    )


def check_jsonschema(document: Path) -> subprocess.CompletedProcess[str]:
    program = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert program is not None, "check-jsonschema is a dev dependency: run `uv sync`"
    return subprocess.run(
        [program, "--schemafile", str(compose_schema()), str(document)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def manage_check(environment: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    """``manage.py check`` in exactly this environment (and PATH): do the settings accept it?"""
    return subprocess.run(
        [sys.executable, "manage.py", "check", *options],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **environment},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def test_the_file_is_valid_by_the_compose_specification() -> None:
    result = check_jsonschema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validation_rejects_a_file_the_specification_forbids(tmp_path: Path) -> None:
    compose = load_compose()
    compose["services"]["web"]["depends_on"]["migrate"]["condition"] = "service_finished"
    broken = tmp_path / "compose.yaml"
    broken.write_text(yaml.safe_dump(compose))

    result = check_jsonschema(broken)

    assert result.returncode != 0
    assert "service_finished" in result.stdout + result.stderr


def test_four_services_one_image_for_the_app(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"db", "migrate", "web", "worker"}
    images = {services[name]["image"] for name in APP_SERVICES}
    assert images == {"${TIMESHEETS_IMAGE:-timesheets:latest}"}, "one name, set from outside"
    # Built once, by the first of them to start; the others run the image it made.
    assert [name for name in APP_SERVICES if "build" in services[name]] == ["migrate"]
    assert services["migrate"]["build"] == "."
    assert [services[name]["command"] for name in APP_SERVICES] == [
        ["migrate"],
        ["web"],
        ["worker"],
    ]


def test_the_database_keeps_its_data_and_reports_when_it_is_ready(
    compose: dict[str, Any],
) -> None:
    db = compose["services"]["db"]
    assert re.fullmatch(r"postgres:\d+", db["image"]), "the official image, major version pinned"
    assert {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} <= set(db["environment"])
    volume, mount = db["volumes"][0].split(":")
    assert volume in compose["volumes"], "a named volume outlives the container"
    assert mount == "/var/lib/postgresql/data"
    assert "pg_isready" in db["healthcheck"]["test"]


def test_migrations_run_once_before_web_and_worker_start(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"
    for name in ("web", "worker"):
        assert services[name]["depends_on"] == {
            "db": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name


def test_web_is_published_and_checked_on_healthz(compose: dict[str, Any]) -> None:
    web = compose["services"]["web"]
    assert web["ports"] == ["${WEB_PUBLISH:-127.0.0.1:8000}:8000"]
    assert [interpolate(port) for port in web["ports"]] == ["127.0.0.1:8000:8000"], (
        "this machine only, unless told otherwise"
    )
    check = web["healthcheck"]["test"]
    assert check[0] == "CMD"
    assert "http://127.0.0.1:8000/healthz" in " ".join(check)
    assert "127.0.0.1" in service_environment("web", compose)["ALLOWED_HOSTS"].split(",")


def test_roles_without_http_do_not_inherit_the_image_health_check(
    compose: dict[str, Any],
) -> None:
    for name in ("migrate", "worker"):
        assert compose["services"][name]["healthcheck"] == {"disable": True}, name


def test_web_and_worker_outlast_the_runners_stop_bound(compose: dict[str, Any]) -> None:
    for name in ("web", "worker"):
        grace = seconds(compose["services"][name]["stop_grace_period"])
        assert grace > STOP_TIMEOUT, f"{name} would be killed before its final accrual"


def test_workers_can_be_scaled_out(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert "ports" not in worker
    assert "container_name" not in worker


def test_every_app_service_reaches_the_db_service_with_its_credentials(
    compose: dict[str, Any],
) -> None:
    db = service_environment("db", compose)
    for name in APP_SERVICES:
        url = urlsplit(service_environment(name, compose)["DATABASE_URL"])
        assert (url.scheme, url.hostname, url.port) == ("postgres", "db", 5432), name
        assert (url.username, url.password, url.path) == (
            db["POSTGRES_USER"],
            db["POSTGRES_PASSWORD"],
            f"/{db['POSTGRES_DB']}",
        ), name


def test_the_app_services_log_json_in_production_mode(compose: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        raw = compose["services"][name]["environment"]
        environment = service_environment(name, compose)
        assert environment["LOG_FORMAT"] == "json", name
        assert environment["DEBUG"] == "false", name
        assert raw["SECRET_KEY"].startswith("${SECRET_KEY:-"), "set from the environment"
        assert environment["SECRET_KEY"], "a fallback, so that `docker compose up` just works"
        assert all(isinstance(value, str) for value in raw.values()), name


def test_web_runs_the_jobs_unless_told_otherwise(compose: dict[str, Any]) -> None:
    raw = compose["services"]["web"]["environment"]
    assert raw["WORKER_AUTOSTART"] == "${WORKER_AUTOSTART:-true}"
    assert "WORKER_AUTOSTART" not in compose["services"]["worker"]["environment"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_the_settings_accept_each_app_services_environment(
    compose: dict[str, Any], name: str
) -> None:
    result = manage_check(service_environment(name, compose))
    assert result.returncode == 0, result.stdout + result.stderr
