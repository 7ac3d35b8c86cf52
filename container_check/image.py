"""The app's image: built from the Dockerfile, run alone, and rebuilt after a code change."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from container_check.api import Api
from container_check.bases import BUILD_TIMEOUT, CACHE_REPOSITORY
from container_check.engine import Engine
from container_check.scenario import wait_until_ready
from container_check.shell import CheckFailed, run, say

IMAGE = f"{CACHE_REPOSITORY}/app:latest"
REBUILT = f"{CACHE_REPOSITORY}/app:rebuilt"
ALONE = f"{CACHE_REPOSITORY}-alone"  # the container and volume of the image-alone run
CHANGED_FILE = "config/__init__.py"  # any source file: the change is what the build sees
BASE_ARGUMENT = re.compile(r"^ARG PYTHON_IMAGE=(\S+)$", re.MULTILINE)


def official_base(root: Path) -> str:
    """The base the Dockerfile builds on when told nothing else."""
    match = BASE_ARGUMENT.search((root / "Dockerfile").read_text())
    if match is None:
        raise CheckFailed("the Dockerfile declares no ARG PYTHON_IMAGE=<default base>")
    return match[1]


def _identifier(engine: Engine, name: str) -> str:
    inspected = engine("image", "inspect", "--format", "{{.Id}}", name, check=False)
    return inspected.stdout.strip()


def build(engine: Engine, context: Path, base: str | None, name: str = IMAGE) -> float:
    """Build the image; return how long it took, in seconds. The image it replaces goes."""
    previous = _identifier(engine, name)
    arguments = ["build", "--progress=plain", "--tag", name]
    if base is not None:
        arguments += ["--build-arg", f"PYTHON_IMAGE={base}"]
    started = time.monotonic()
    engine(*arguments, str(context), timeout=BUILD_TIMEOUT)
    took = time.monotonic() - started
    if previous and previous != _identifier(engine, name):
        engine("image", "rm", previous, check=False)  # still used by a container: kept
    return took


def size_mb(engine: Engine, name: str = IMAGE) -> float:
    return int(engine("image", "inspect", "--format", "{{.Size}}", name).stdout) / 1e6


def rebuild_after_a_change(engine: Engine, root: Path, base: str | None) -> float:
    """Build a copy of the repository with one source file changed; return the time taken."""
    listed = run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        timeout=60,
    )
    with tempfile.TemporaryDirectory(prefix="rebuild-") as folder:
        copy = Path(folder)
        for relative in filter(None, listed.stdout.split("\0")):
            source = root / relative
            if source.is_file():
                (copy / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, copy / relative)
        with (copy / CHANGED_FILE).open("a") as changed:
            changed.write(f"# changed for a rebuild: {secrets.token_hex(8)}\n")
        took = build(engine, copy, base, REBUILT)
    engine("image", "rm", REBUILT, check=False)
    return took


def _run_alone(engine: Engine, *arguments: str) -> subprocess.CompletedProcess[str]:
    return engine("run", "--rm", "--name", ALONE, *arguments, check=False, timeout=120)


def alone(engine: Engine) -> None:
    """The image without compose: one line for what is missing, and the README's command
    with a volume for SQLite serves."""
    key = f"SECRET_KEY={secrets.token_urlsafe(50)}"
    for arguments, code, expected in (
        ((IMAGE,), 2, "Configuration error: SECRET_KEY is empty and DEBUG is off. "),
        (("-e", key, IMAGE), 1, "CommandError: The SQLite database /app/db.sqlite3 cannot be "),
    ):
        missing = _run_alone(engine, *arguments)
        lines = missing.stderr.strip().splitlines()
        if missing.returncode != code or len(lines) != 1 or not lines[0].startswith(expected):
            raise CheckFailed(f"the image alone ended with {missing.returncode}: {lines}")
    unknown = _run_alone(engine, IMAGE, "wbe")
    if unknown.returncode != 2 or not unknown.stderr.startswith("Unknown role 'wbe': use web"):
        raise CheckFailed(f"an unknown role got {unknown.returncode}: {unknown.stderr!r}")
    engine("volume", "rm", "--force", ALONE)
    try:
        engine(
            "run",
            "--detach",
            "--name",
            ALONE,
            "--publish",
            "127.0.0.1::8000",
            "--volume",
            f"{ALONE}:/data",
            "--env",
            "DATABASE_URL=sqlite:////data/db.sqlite3",
            "--env",
            "MIGRATE_ON_START=true",
            "--env",
            key,
            IMAGE,
        )
        address = engine("port", ALONE, "8000").stdout.split()[0]
        wait_until_ready(Api(address), timeout=60)
        say("the image alone: one line without a SECRET_KEY or a database; serves with a volume")
    finally:
        engine("rm", "--force", ALONE, check=False)
        engine("volume", "rm", "--force", ALONE, check=False)
