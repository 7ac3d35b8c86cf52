"""``manage.py create_api_token``: a new token on stdout, alone, and readable refusals."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from timesheets.models import ApiToken
from timesheets.services import api_token_digest

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def create(*args: str) -> tuple[str, str]:
    stdout, stderr = StringIO(), StringIO()
    call_command("create_api_token", *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def test_prints_only_the_token_on_stdout(alice: User) -> None:
    stdout, stderr = create("alice", "--name", "laptop")

    token = stdout.removesuffix("\n")
    assert token.startswith("tsk_")
    assert stdout == f"{token}\n"
    assert token not in stderr
    assert "created for alice" in stderr
    stored = ApiToken.objects.get()
    assert (stored.user_id, stored.name, stored.expires_at) == (alice.pk, "laptop", None)
    assert stored.digest == api_token_digest(token)
    assert stored.prefix in stderr


def test_the_token_authenticates_against_the_api(alice: User) -> None:
    token = create("alice")[0].strip()

    response = Client().get("/api/timesheets", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200
    assert response.json()["count"] == 0
    assert ApiToken.objects.get().last_used_at is not None


def test_each_run_makes_a_new_token(alice: User) -> None:
    first, second = create("alice")[0], create("alice")[0]

    assert first != second
    assert ApiToken.objects.filter(user=alice).count() == 2


def test_expires_in_days_sets_the_expiry(alice: User) -> None:
    before = timezone.now()
    create("alice", "--expires-in-days", "3")
    after = timezone.now()

    expires_at = ApiToken.objects.get().expires_at
    assert expires_at is not None
    assert before + timedelta(days=3) <= expires_at <= after + timedelta(days=3)


def test_an_unknown_user_is_refused_and_nothing_is_created(alice: User) -> None:
    with pytest.raises(CommandError, match=r"No user named 'nobody'\. Create one first"):
        create("nobody")

    assert not ApiToken.objects.exists()


@pytest.mark.parametrize(
    ("days", "message"),
    [
        ("0", "--expires-in-days must be between 1 and 36500"),
        ("-1", "--expires-in-days must be between 1 and 36500"),
        (str(10**9), "--expires-in-days must be between 1 and 36500"),
        ("36501", "--expires-in-days must be between 1 and 36500"),
        ("abc", "invalid int value: 'abc'"),
        ("1.5", "invalid int value: '1.5'"),
        ("9" * 5000, "invalid int value"),
    ],
)
def test_bad_expiry_is_refused_and_nothing_is_created(alice: User, days: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        create("alice", "--expires-in-days", days)

    assert not ApiToken.objects.exists()


def test_the_longest_expiry_is_allowed(alice: User) -> None:
    create("alice", "--expires-in-days", "36500")

    assert ApiToken.objects.get().expires_at is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["\udcff"], r"The username '\\udcff' is not valid UTF-8 text\."),
        (["a\x00b"], r"The username must not contain NUL characters\."),
        (["alice", "--name", "caf\udce9"], r"--name 'caf\\udce9' is not valid UTF-8 text\."),
        (["alice", "--name", "x\x00"], r"--name must not contain NUL characters\."),
        (["alice", "--name", "n" * 101], r"--name must be at most 100 characters long\."),
    ],
)
def test_text_no_database_can_store_is_refused(alice: User, args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        create(*args)

    assert not ApiToken.objects.exists()


@pytest.mark.slow
def test_token_equals_dollar_paren_works_from_a_shell(tmp_path: Path) -> None:
    """The real command in its own process: stdout holds the token and nothing else."""
    environ = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path}/cli.sqlite3",
    }

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )

    manage("migrate", "--verbosity", "0")
    manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; User.objects.create(username='cli')",
    )

    result = manage("create_api_token", "cli", "--expires-in-days", "1")

    token = result.stdout.removesuffix("\n")
    assert re.fullmatch(r"tsk_[A-Za-z0-9_-]{43}", token), result.stdout
    assert "created for cli" in result.stderr
