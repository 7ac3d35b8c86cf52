"""Liveness and readiness endpoints for whoever runs the service."""

from __future__ import annotations

import shutil
from pathlib import Path

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe

from config.database import unreachable_reason
from worker import process

DISK_FREE_MINIMUM = 8 * 2**20  # bytes free on an embedded database's disk to be ready
_migrated = False  # once applied, migrations stay applied for the life of the process

type Problem = tuple[str, str]  # the failing check, and what to do about it


@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches no database."""
    return JsonResponse({"status": "ok"})


def _database_problem() -> Problem | None:
    global _migrated  # noqa: PLW0603
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        if not _migrated:
            executor = MigrationExecutor(connection)
            pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
            if pending:
                return "migrations", f"{len(pending)} migrations are not applied: run migrate."
            _migrated = True
    except DatabaseError as error:
        # While connecting fails, the error is only the pool's "couldn't get a connection";
        # the failed attempt says why.
        reason = unreachable_reason() or str(error).strip()
        return "database", f"The database is not reachable: {reason}"
    return _write_problem() or _disk_problem()


def _write_problem() -> Problem | None:
    """A database that answers but refuses writes (read-only, out of space) cannot serve."""
    try:
        # Rewrites one row with its own value: a committed write that changes nothing.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "UPDATE django_migrations SET app = app "
                "WHERE id = (SELECT MIN(id) FROM django_migrations)"
            )
    except DatabaseError as error:
        return "writes", f"The database refuses writes: {' '.join(str(error).split())}"
    return None


def _disk_problem() -> Problem | None:
    """An embedded database on a nearly full disk: its next writes would fail."""
    if connection.vendor != "sqlite":
        return None  # the server's disk: its refusal of the write above tells
    free = shutil.disk_usage(Path(connection.settings_dict["NAME"]).parent).free
    if free >= DISK_FREE_MINIMUM:
        return None
    return (
        "disk",
        f"The disk holding the database has {free / 2**20:.1f} MiB free, under "
        f"{DISK_FREE_MINIMUM // 2**20} MiB: free some space.",
    )


def _worker_problem() -> Problem | None:
    runner = process.current()
    if runner is None or not runner.running:
        return "worker", "The periodic-job runner is not running in this process."
    return None


def _worker_expected() -> bool:
    # Where the ASGI lifespan starts the runner. Under runserver or a WSGI server it starts
    # with the first timer instead, and runworker processes serve no HTTP.
    return bool(settings.WORKER_AUTOSTART) and process.serving_loop_marked()


@require_safe
async def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database answers and takes writes, migrations are applied, an embedded
    database's disk has room, the runner runs if expected."""
    expected = _worker_expected()
    problem = await sync_to_async(_database_problem)() or (_worker_problem() if expected else None)
    if problem is not None:
        failing, detail = problem
        return JsonResponse(
            {"status": "unavailable", "failing": failing, "detail": detail}, status=503
        )
    return JsonResponse(
        {
            "status": "ready",
            "checks": {
                "database": "ok",
                "migrations": "ok",
                "writes": "ok",
                "disk": "ok",
                "worker": "ok" if expected else "not run by this process",
            },
        }
    )
