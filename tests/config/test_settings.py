"""Settings as a fresh process sees them, from a controlled environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120  # seconds for one process

SHOW_DATABASE = (
    "import json, django; django.setup(); from django.conf import settings; "
    "print(json.dumps(settings.DATABASES['default'], default=repr))"
)


def run(*args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    """Run ``python <args>`` in the project with only the given variables set."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "DJANGO_SETTINGS_MODULE": "config.settings"}
        | environ,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def database(url: str, **environ: str) -> dict[str, Any]:
    result = run("-c", SHOW_DATABASE, DATABASE_URL=url, **environ)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


class TestSecretKey:
    def test_debug_off_without_a_secret_key_fails_readably(self) -> None:
        result = run("-c", "import django; django.setup()", DEBUG="false")

        assert result.returncode != 0
        assert "SettingsError: SECRET_KEY is empty and DEBUG is off." in result.stderr
        assert "secrets.token_urlsafe" in result.stderr

    def test_manage_py_says_it_in_one_line(self) -> None:
        result = run("manage.py", "check", DEBUG="false")

        assert result.returncode == 2
        assert result.stderr.startswith(
            "Configuration error: SECRET_KEY is empty and DEBUG is off."
        )
        assert result.stderr.count("\n") == 1
        assert "Traceback" not in result.stderr

    def test_debug_off_with_a_secret_key_loads(self) -> None:
        code = (
            "import django; django.setup(); from django.conf import settings as s; print(s.DEBUG)"
        )

        result = run("-c", code, DEBUG="false", SECRET_KEY="k" * 50)

        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("WORKER_TICK_SECONDS", "abc", "WORKER_TICK_SECONDS='abc' is not a number."),
        (
            "WORKER_TICK_SECONDS",
            "0",
            "WORKER_TICK_SECONDS='0' is out of range: use from 0.05 to 3600.",
        ),
        (
            "WORKER_TICK_SECONDS",
            "-1",
            "WORKER_TICK_SECONDS='-1' is out of range: use from 0.05 to 3600.",
        ),
        ("WORKER_TICK_SECONDS", "nan", "WORKER_TICK_SECONDS='nan' is not a finite number."),
        ("WORKER_TICK_SECONDS", "inf", "WORKER_TICK_SECONDS='inf' is not a finite number."),
        ("DEBUG", "maybe", "DEBUG='maybe' is not a boolean; use true or false."),
        ("LOG_FORMAT", "xml", "LOG_FORMAT='xml' is not one of: console, json."),
        (
            "DATABASE_POOL_SIZE",
            "0",
            "DATABASE_POOL_SIZE='0' is out of range: use from 1 to 1000.",
        ),
        *(
            (
                "TIMESHEETS_MAX_RUNNING_HOURS",
                hours,
                f"TIMESHEETS_MAX_RUNNING_HOURS={hours!r} is out of range: "
                "use 0 (no limit) or from 0.0166667 to 744.",
            )
            for hours in ("1e8", "1e-10", "745", "-1")
        ),
        (
            "TIMESHEETS_MAX_RUNNING_PER_USER",
            "-1",
            "TIMESHEETS_MAX_RUNNING_PER_USER='-1' is out of range: "
            "use 0 (no limit) or from 1 to 1000.",
        ),
        (
            "WORKER_METRICS_PORT",
            "65536",
            "WORKER_METRICS_PORT='65536' is out of range: use 0 (none) or from 1 to 65535.",
        ),
        (
            "TIMESHEETS_MAX_RUNNING_PER_USER",
            "two",
            "TIMESHEETS_MAX_RUNNING_PER_USER='two' is not a whole number.",
        ),
        (
            "DATABASE_URL",
            "mysql://db/timesheets",
            "DATABASE_URL='mysql://db/timesheets' names an unsupported database; "
            "use sqlite:/// or postgres://.",
        ),
    ],
)
def test_manage_py_check_reports_a_bad_variable_in_one_line(
    variable: str, value: str, message: str
) -> None:
    result = run("manage.py", "check", **{variable: value})

    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        f"Configuration error: {message}\n",
    )


class TestDatabaseUrl:
    def test_a_relative_sqlite_file_lives_in_the_project(self) -> None:
        config = database("sqlite:///x.sqlite3")

        assert config["ENGINE"] == "django.db.backends.sqlite3"
        assert config["NAME"] == str(ROOT / "x.sqlite3")
        assert Path(config["NAME"]).is_absolute()
        assert config["TEST"]["NAME"] == str(ROOT / "test_x.sqlite3")
        options = config["OPTIONS"]
        assert "PRAGMA journal_mode=WAL;" in options["init_command"]
        assert "PRAGMA foreign_keys=ON;" in options["init_command"]
        assert options["transaction_mode"] == "IMMEDIATE"
        assert options["timeout"] == 20

    def test_an_absolute_sqlite_file_stays_where_it_is(self, tmp_path: Path) -> None:
        config = database(f"sqlite:///{tmp_path}/data.sqlite3")

        assert config["NAME"] == str(tmp_path / "data.sqlite3")
        assert config["TEST"]["NAME"] == str(tmp_path / "test_data.sqlite3")

    def test_the_default_is_the_project_sqlite_file(self) -> None:
        result = run("-c", SHOW_DATABASE)

        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["NAME"] == str(ROOT / "db.sqlite3")

    def test_postgres_gets_a_connection_pool(self) -> None:
        config = database("postgres://u:p@db.example:5433/ts", DATABASE_POOL_SIZE="7")

        assert config["ENGINE"] == "django.db.backends.postgresql"
        assert (config["NAME"], config["HOST"], config["PORT"]) == ("ts", "db.example", 5433)
        assert config["CONN_MAX_AGE"] == 0
        pool = config["OPTIONS"]["pool"]
        assert (pool["min_size"], pool["max_size"], pool["timeout"]) == (1, 7, 10)
        assert "check_connection" in pool["check"]

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("mysql://u@db/x", "names an unsupported database; use sqlite:/// or postgres://."),
            ("nonsense://x", "is not usable"),
        ],
    )
    def test_an_unsupported_url_fails_readably(self, url: str, message: str) -> None:
        result = run("-c", SHOW_DATABASE, DATABASE_URL=url)

        assert result.returncode != 0
        assert f"SettingsError: DATABASE_URL={url!r}" in result.stderr
        assert message in result.stderr

    def test_the_password_never_appears_in_the_message(self) -> None:
        result = run("-c", SHOW_DATABASE, DATABASE_URL="mysql://admin:s3cr3t@db/x")

        assert result.returncode != 0
        assert "s3cr3t" not in result.stderr
        assert "DATABASE_URL='mysql://admin:***@db/x'" in result.stderr


class TestBounds:
    @pytest.mark.parametrize(
        ("environ", "said"),
        [
            (
                {"HTTP_HEADER_TIMEOUT_SECONDS": "31"},
                "Configuration error: HTTP_HEADER_TIMEOUT_SECONDS='31' is out of range: use from 1 "
                "to 30.",
            ),
            (
                {"HTTP_HEADER_TIMEOUT_SECONDS": "0"},
                "Configuration error: HTTP_HEADER_TIMEOUT_SECONDS='0' is out of range: use from 1 "
                "to 30.",
            ),
            (
                {"WEBHOOKS_ALLOWED_NETWORKS": "10.0.0.0/8,localhost"},
                "Configuration error: WEBHOOKS_ALLOWED_NETWORKS: 'localhost' does not appear to be "
                "an IPv4 or IPv6 network; use CIDRs such as 10.0.0.0/8.",
            ),
            (
                {"WEBHOOKS_CONCURRENCY": "0"},
                "Configuration error: WEBHOOKS_CONCURRENCY='0' is out of range: use from 1 to "
                "1000.",
            ),
            (
                {"METRICS_TOKEN": "short"},
                "Configuration error: METRICS_TOKEN is 5 characters long; use at least 16",
            ),
        ],
    )
    def test_out_of_range_is_one_line(self, environ: dict[str, str], said: str) -> None:
        result = run("manage.py", "check", **environ)

        assert result.returncode == 2
        assert result.stderr.startswith(said), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "short" not in result.stderr, "a token is never printed"


SHOW_MAIL = (
    "import json, django; django.setup(); from django.conf import settings; "
    "from django.core import mail; from django.views.debug import SafeExceptionReporterFilter; "
    "m = mail.mailers.default; "
    "print(json.dumps({'backend': type(m).__module__, 'from': settings.DEFAULT_FROM_EMAIL, "
    "'smtp': [getattr(m, k, None) for k in ('host', 'port', 'username', 'password', 'use_tls')], "
    "'shown': SafeExceptionReporterFilter().get_safe_settings()['MAILERS']}, default=repr))"
)
SMTP_PASSWORD = "hunter2-not-for-logs"


class TestEmail:
    def test_printed_by_the_process_while_debugging(self) -> None:
        result = run("-c", SHOW_MAIL, DEBUG="true")

        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["backend"] == "django.core.mail.backends.console"

    def test_sent_over_smtp_from_the_environment_otherwise(self) -> None:
        result = run(
            "-c",
            SHOW_MAIL,
            DEBUG="false",
            SECRET_KEY="k" * 50,
            EMAIL_HOST="smtp.example.com",
            EMAIL_PORT="587",
            EMAIL_HOST_USER="mailer",
            EMAIL_HOST_PASSWORD=SMTP_PASSWORD,
            EMAIL_USE_TLS="true",
            DEFAULT_FROM_EMAIL="time@example.com",
        )

        assert result.returncode == 0, result.stderr
        shown = json.loads(result.stdout)
        assert shown["backend"] == "django.core.mail.backends.smtp"
        assert shown["smtp"] == ["smtp.example.com", 587, "mailer", SMTP_PASSWORD, True]
        assert shown["from"] == "time@example.com"
        # Django's error pages and reports hide it.
        assert SMTP_PASSWORD not in json.dumps(shown["shown"])

    def test_a_bad_value_is_refused_without_printing_the_password(self) -> None:
        result = run(
            "-c",
            "import django; django.setup()",
            EMAIL_PORT="70000",
            EMAIL_HOST_PASSWORD=SMTP_PASSWORD,
        )

        assert result.returncode != 0
        assert "EMAIL_PORT='70000' is out of range" in result.stderr
        assert SMTP_PASSWORD not in result.stderr
