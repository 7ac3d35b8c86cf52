"""The README tells the truth: its settings table, its two commands, and what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from config.env import VARIABLES
from timesheets.services import JOB_LOCK_TIMEOUT, JOB_STATEMENT_TIMEOUT
from worker.runner import STOP_TIMEOUT

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
ROW = re.compile(
    r"^\| `(?P<name>[A-Z_]+)` \| (?P<default>`[^`]*`|\(empty\)) \| (?P<allowed>[^|]+) \| .+ \|$",
    re.M,
)


def documented() -> dict[str, tuple[str, str]]:
    return {
        row["name"]: (
            "" if row["default"] == "(empty)" else row["default"].strip("`"),
            row["allowed"],
        )
        for row in ROW.finditer(README)
    }


def test_every_setting_is_in_the_table_with_its_default_and_what_it_allows() -> None:
    assert documented() == {
        name: (variable.default, variable.allowed) for name, variable in VARIABLES.items()
    }


def test_the_first_screen_gives_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:12])
    assert "uv run manage.py serve" in first_screen
    assert "uv run pytest" in first_screen


def test_ci_runs_the_readme_test_command_on_both_databases() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^uv run pytest \|\|", ci, re.M), "on the default, SQLite"
    assert re.search(r"^uv run pytest -m slow\b", ci, re.M), "and the slow tests"
    assert re.search(r"^DATABASE_URL=\S+ uv run pytest \|\|", ci, re.M)
    assert re.search(r"^DATABASE_URL=\S+ uv run pytest -m slow\b", ci, re.M)
    assert re.search(r"^postgresql=postgres://\S+$", ci, re.M), "on PostgreSQL"


def test_the_stop_grace_is_the_runner_s() -> None:
    assert f"a run in progress gets up to {STOP_TIMEOUT:g} s to finish" in " ".join(README.split())


def test_the_job_timeouts_are_the_services() -> None:
    assert (
        f"Every statement of a job gives up after {JOB_LOCK_TIMEOUT:g} s waiting for a lock "
        f"and {JOB_STATEMENT_TIMEOUT:g} s in all (on SQLite: {JOB_STATEMENT_TIMEOUT:g} s waiting"
    ) in " ".join(README.split())
