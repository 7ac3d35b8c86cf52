"""A database that cannot be used is told in one line, with the fix, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import OperationalError, ProgrammingError
from django.test import Client

from config.database_problems import MIGRATE, fix, reason
from tests.processes import ROOT, free_port

PASSWORD = "correct-horse-battery-staple"  # must never be printed


@pytest.mark.parametrize(
    ("said", "remedy"),
    [
        (
            'connection to server at "127.0.0.1", port 1 failed: Connection refused',
            "Check DATABASE_URL and that the database is running.",
        ),
        (
            "failed to resolve host 'db.invalid': [Errno -2] Name or service not known",
            "Check the host name in DATABASE_URL.",
        ),
        (
            'connection failed: FATAL: database "nope" does not exist',
            "Create the database (createdb), or check its name in DATABASE_URL.",
        ),
        ('FATAL: role "nobody" does not exist', "Check the user in DATABASE_URL."),
        (
            'FATAL: password authentication failed for user "timesheets"',
            "Check the user and password in DATABASE_URL.",
        ),
        (
            "unable to open database file",
            "Check that the folder in DATABASE_URL exists and is writable by this user.",
        ),
        ("no such table: timesheets_apitoken", MIGRATE),
        ('relation "timesheets_apitoken" does not exist', MIGRATE),
        (
            "attempt to write a readonly database",
            "Make the database file and its folder writable by this user.",
        ),
        ("database or disk is full", "Free some space on the disk that holds the database."),
    ],
)
def test_each_problem_comes_with_its_fix(said: str, remedy: str) -> None:
    assert fix(OperationalError(said)) == remedy


def test_the_reason_is_one_line_without_the_password() -> None:
    error = OperationalError(f"FATAL:  password authentication failed\n  for {PASSWORD}\n")
    assert reason(error, PASSWORD) == "FATAL: password authentication failed for ***."


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/api/projects", "/api/timesheets/current"])
def test_an_unmigrated_database_answers_503_naming_migrate(
    path: str, token_for: Callable[[User], str], alice: User
) -> None:
    token = token_for(alice)
    call_command("migrate", "timesheets", "zero", verbosity=0)
    try:
        response = Client(headers={"Authorization": f"Bearer {token}"}).get(path)
    finally:
        call_command("migrate", verbosity=0)

    assert response.status_code == 503
    assert response.json() == {
        "detail": "The database is not migrated: run `python manage.py migrate`."
    }
    assert response["Retry-After"] == "5"


@pytest.mark.django_db(transaction=True)
def test_an_admin_page_on_an_unmigrated_database_answers_503_naming_migrate() -> None:
    staff = User.objects.create_superuser(username="root", password=None, email="r@example.com")
    client = Client()
    client.force_login(staff)
    call_command("migrate", "timesheets", "zero", verbosity=0)
    try:
        response = client.get("/admin/timesheets/timesheet/")
    finally:
        call_command("migrate", verbosity=0)

    assert response.status_code == 503
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content == b"The database is not migrated: run `python manage.py migrate`."


def test_other_programming_errors_stay_errors() -> None:
    assert fix(ProgrammingError('syntax error at or near "SELEC"')) != MIGRATE


def run(url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url, "SECRET_KEY": "k" * 50, "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


BAD_DATABASES = {
    "refused": (
        f"postgres://timesheets:{PASSWORD}@127.0.0.1:1/timesheets",
        "Check DATABASE_URL and that the database is running.",
    ),
    "unknown host": (
        f"postgres://timesheets:{PASSWORD}@no-such-host.invalid:5432/timesheets",
        "Check the host name in DATABASE_URL.",
    ),
    "unwritable SQLite path": (
        "sqlite:////proc/no-such-folder/db.sqlite3",
        "Check that the folder in DATABASE_URL exists and is writable by this user.",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("problem", sorted(BAD_DATABASES))
@pytest.mark.parametrize(
    "command", [("migrate",), ("create_api_token", "alice"), ("serve", "--port", "0")]
)
def test_commands_name_the_database_problem_in_one_line(
    problem: str, command: tuple[str, ...]
) -> None:
    url, remedy = BAD_DATABASES[problem]

    completed = run(url, *command)

    assert completed.returncode == 1
    (line,) = completed.stderr.strip().splitlines()
    assert line.startswith("Database at "), completed.stderr
    assert line.endswith(remedy)
    assert PASSWORD not in completed.stdout + completed.stderr


@pytest.mark.slow
@pytest.mark.postgresql
def test_a_missing_database_is_named_with_the_fix() -> None:
    completed = run("postgres://postgres@127.0.0.1:5432/no_such_database_here", "migrate")

    assert completed.returncode == 1
    (line,) = completed.stderr.strip().splitlines()
    assert '"no_such_database_here" does not exist' in line
    assert line.endswith("Create the database (createdb), or check its name in DATABASE_URL.")


@pytest.mark.slow
def test_serve_on_a_taken_port_says_so_and_suggests_another(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        completed = run(f"sqlite:///{tmp_path / 'db.sqlite3'}", "serve", "--port", str(port))

    assert completed.returncode == 1
    assert completed.stderr.strip().splitlines() == [
        f"CommandError: Port {port} on 127.0.0.1 is already in use, by another server or "
        f"another serve; choose another with --port, e.g. --port {port + 1}."
    ]
    assert not (tmp_path / "db.sqlite3").exists(), "refused before migrating"
