"""What the numbers were measured on: cores, memory, load, software versions."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("django", "django-ninja", "asgiref", "psycopg", "uvicorn", "gunicorn", "httpx")


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        return None
    return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def database_version() -> str:
    if connection.vendor == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        row = cursor.fetchone()
    return f"PostgreSQL {row[0]}"


def _git(*arguments: str) -> str | None:
    try:
        completed = subprocess.run(  # noqa: S603  (fixed arguments)
            ["git", *arguments],  # noqa: S607  (git from PATH, as a developer runs it)
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.rstrip()  # porcelain lines start with a space: keep it


def code() -> dict[str, Any]:
    """The commit measured, and the tracked files that differed from it."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted": None if status is None else [line[3:] for line in status.splitlines()],
    }


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def describe() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "database": database_version(),
        "packages": {package: _version(package) for package in PACKAGES},
        "code": code(),
        "load_average_at_start": load_average(),
    }
