"""Liveness and readiness endpoints for whoever runs the service."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe

from config.database import unreachable_reason
from worker import process

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
    return None


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
    """Readiness: the database answers, migrations are applied, the runner runs if expected."""
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
                "worker": "ok" if expected else "not run by this process",
            },
        }
    )
