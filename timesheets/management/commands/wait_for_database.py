"""``manage.py wait_for_database``: wait, for a bounded time, until the database answers.

Containers start together, and PostgreSQL may still be starting when the app does. The
container's entrypoint waits here before web, worker and migrate start, so that a database that
never comes ends the start with one readable line, not a traceback from the first query.
"""

from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path
from typing import Any

import structlog
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.utils import load_backend

from config.database_problems import describe, fix, reason

logger = structlog.get_logger(__name__)

RETRY_INTERVAL = 1.0  # seconds between two attempts
MIN_CONNECT_TIMEOUT = 2  # seconds: libpq reads 0 as "wait forever" and 1 as 2
PROBE_ALIAS = "wait_for_database"


def probe(settings_dict: dict[str, Any], *, connect_timeout: int) -> None:
    """Open one connection of its own, run a trivial query, close it; raise if that fails."""
    probe_settings = copy.deepcopy(settings_dict)
    options = probe_settings["OPTIONS"]
    # The pool would answer "no connection after 10 s" on its own schedule and hide what the
    # server said; a direct connection reports the real reason at once.
    options.pop("pool", None)
    if probe_settings["ENGINE"] == "django.db.backends.postgresql":
        # A host that drops packets would otherwise hold a connection attempt for minutes.
        options["connect_timeout"] = connect_timeout
    wrapper = load_backend(probe_settings["ENGINE"]).DatabaseWrapper(probe_settings, PROBE_ALIAS)
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        wrapper.close()


def sqlite_problem(path: Path) -> str | None:
    """Why this process could not write the SQLite file at ``path``, or None if it can.

    SQLite writes its write-ahead log and shared-memory files next to the database, so the
    folder must be writable, not only the file.
    """
    folder = path.parent
    if not folder.is_dir():
        return f"its folder {folder} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"its folder {folder} is not writable by this user (uid {os.getuid()})"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return f"the file is not writable by this user (uid {os.getuid()})"
    return None


class Command(BaseCommand):
    help = (
        "Wait until the database accepts connections, for at most --timeout seconds; "
        "fail with one line naming the database and the last error otherwise."
    )
    # System checks may need the database this command is waiting for.
    requires_system_checks = ()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--timeout",
            type=float,
            default=60.0,
            help="Seconds to keep trying before giving up (default: 60).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        timeout: float = options["timeout"]
        if not math.isfinite(timeout) or timeout < 0:
            raise CommandError("--timeout must be a number of seconds, 0 or more.")
        settings_dict = connections[DEFAULT_DB_ALIAS].settings_dict
        if settings_dict["ENGINE"] == "django.db.backends.sqlite3":
            # An embedded file: there is no server to wait for, but there may be no place
            # to write it (a container's read-only application folder, say).
            path = Path(settings_dict["NAME"])
            problem = sqlite_problem(path)
            if problem is not None:
                raise CommandError(
                    f"The SQLite database {path} cannot be written: {problem}. Set "
                    "DATABASE_URL to a PostgreSQL server, or to a SQLite file on a writable "
                    "volume (in the image: sqlite:////data/db.sqlite3 with a volume at /data)."
                )
            return
        target = describe(settings_dict)
        started = time.monotonic()
        deadline = started + timeout
        attempts = 0
        while True:
            attempts += 1
            remaining = deadline - time.monotonic()
            try:
                probe(settings_dict, connect_timeout=max(MIN_CONNECT_TIMEOUT, math.ceil(remaining)))
            except DatabaseError as error:
                said = reason(error, settings_dict.get("PASSWORD") or "")
                remedy = fix(error)
            else:
                waited = round(time.monotonic() - started, 1)
                logger.info("database_available", database=target, waited_s=waited)
                return
            if attempts == 1:
                logger.info("database_waiting", database=target, error=said, timeout_s=timeout)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CommandError(
                    f"Database at {target} not reachable after {timeout:g} s: {said} {remedy}"
                )
            time.sleep(min(RETRY_INTERVAL, remaining))
