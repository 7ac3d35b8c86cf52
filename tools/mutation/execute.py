"""Running the tests against each mutant, in copies of the project, several at a time."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tools.mutation.mutants import Mutant

# Not copied: the environment, the history, caches and databases of the project's own runs.
_NOT_COPIED = shutil.ignore_patterns(
    ".venv", ".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "*.sqlite3*"
)
TIMEOUT_FACTOR = 4  # a mutant's tests may take this many times the baseline's before timing out
MIN_TIMEOUT = 20.0  # seconds, whatever the baseline took
NO_TESTS_COLLECTED = 5  # pytest's exit code


class BaselineFailed(RuntimeError):
    """The tests fail without any mutant: no mutant can be judged."""


@dataclass(frozen=True)
class Outcome:
    mutant: Mutant
    killed: bool
    how: str  # "tests failed", "timed out", "survived"
    seconds: float


@contextmanager
def workspaces(root: Path, count: int) -> Iterator[queue.Queue[Path]]:
    """``count`` copies of the project, each used by one test run at a time."""
    with tempfile.TemporaryDirectory(prefix="mutation-") as parent:
        free: queue.Queue[Path] = queue.Queue()
        for number in range(count):
            copy = Path(parent) / f"copy{number}"
            shutil.copytree(root, copy, ignore=_NOT_COPIED)
            free.put(copy)
        yield free


def _environment() -> dict[str, str]:
    environment = dict(os.environ)
    # Each copy keeps its SQLite test database in its own folder; a shared PostgreSQL test
    # database would be used by several runs at once.
    environment.pop("DATABASE_URL", None)
    # A mutant can have the size and the modification second of the module it replaces: a
    # cached bytecode file would then run the previous code.
    environment["PYTHONDONTWRITEBYTECODE"] = "1"
    environment["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    # A console traceback with its locals (rich) takes longer to render than most tests take.
    environment["LOG_FORMAT"] = "json"
    return environment


def run_tests(copy: Path, tests: Sequence[str], *, timeout: float) -> tuple[int | None, float]:
    """Run the selected tests in ``copy``; the exit code (None: timed out) and the seconds."""
    started = time.monotonic()
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-x",  # one failure kills the mutant: the rest need not run
        "-q",
        "-p",
        "no:cacheprovider",
        # Only pytest-django: the other installed plugins (schemathesis, hypothesis) cost
        # seconds of start-up per mutant and none of the tests mutants are judged by.
        "-p",
        "pytest_django.plugin",
        *tests,
    ]
    try:
        completed = subprocess.run(  # noqa: S603  (this interpreter, the given test paths)
            command,
            cwd=copy,
            env=_environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - started
    return completed.returncode, time.monotonic() - started


def baseline(copy: Path, modules: dict[str, str], tests: Sequence[str]) -> float:
    """Run the tests on the modules as the mutants are written; the seconds they took."""
    for path, source in modules.items():
        (copy / path).write_text(source)
    code, seconds = run_tests(copy, tests, timeout=3600)
    if code != 0:
        raise BaselineFailed(
            f"the tests fail without any mutant (pytest exit code {code}): {' '.join(tests)}"
        )
    return seconds


def judge(
    mutants: Sequence[Mutant],
    tests: Sequence[str],
    *,
    free: queue.Queue[Path],
    jobs: int,
    timeout: float,
    originals: dict[str, str],
    report: Callable[[Outcome], None],
) -> list[Outcome]:
    def one(mutant: Mutant) -> Outcome:
        copy = free.get()
        target = copy / mutant.path
        try:
            target.write_text(mutant.source)
            code, seconds = run_tests(copy, tests, timeout=timeout)
        finally:
            target.write_text(originals[mutant.path])
            free.put(copy)
        if code == NO_TESTS_COLLECTED:
            raise BaselineFailed(f"no test was collected from: {' '.join(tests)}")
        if code is None:
            outcome = Outcome(mutant, killed=True, how="timed out", seconds=seconds)
        elif code == 0:
            outcome = Outcome(mutant, killed=False, how="survived", seconds=seconds)
        else:
            outcome = Outcome(mutant, killed=True, how="tests failed", seconds=seconds)
        report(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, mutants))
