"""``manage.py serve``: apply migrations, then serve the ASGI app with uvicorn."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandParser

from config.commands import ServiceCommand
from worker import metrics

logger = structlog.get_logger(__name__)


class Command(ServiceCommand):
    help = "Apply migrations and serve the app with uvicorn (ASGI, lifespan on)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes.")
        parser.add_argument(
            "--no-migrate", action="store_true", help="Do not apply migrations first."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["no_migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
            logger.info("migrations_applied", database=settings.DATABASES["default"]["NAME"])
        if not settings.DEBUG:
            # The admin's styles are served by the app itself, from the collected files.
            call_command("collectstatic", interactive=False, verbosity=0)
        self._share_metrics(workers=options["workers"])
        uvicorn.run(
            "config.asgi:application",
            host=options["host"],
            port=options["port"],
            workers=options["workers"],
            lifespan="on",
            # Logging is already configured by Django settings; one event per request comes
            # from the request middleware, so uvicorn's access log would only repeat it.
            log_config=None,
            access_log=False,
            proxy_headers=True,
        )

    @staticmethod
    def _share_metrics(*, workers: int) -> None:
        """Several uvicorn workers report one set of metrics through a shared directory."""
        directory = metrics.multiprocess_directory()
        if directory is None and workers > 1:
            directory = tempfile.mkdtemp(prefix="timesheets-metrics-")
            # Read by prometheus-client when each worker process imports it.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        if directory is not None:
            metrics.prepare_multiprocess_directory(Path(directory))
