"""``manage.py serve``: apply migrations, then serve the ASGI app with uvicorn."""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError, CommandParser

from config import server
from config.commands import ServiceCommand
from worker import metrics

logger = structlog.get_logger(__name__)

MAX_PORT = 65535


class Command(ServiceCommand):
    help = (
        "Apply migrations and serve the app with uvicorn (ASGI, lifespan on, httptools and "
        "uvloop; slow request headers time out after HTTP_HEADER_TIMEOUT_SECONDS)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--host",
            default="127.0.0.1",
            help="The address to listen on (default: 127.0.0.1; 0.0.0.0 for every interface).",
        )
        parser.add_argument(
            "--port", type=int, default=8000, help="The port to listen on (default: 8000)."
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            help="uvicorn worker processes, each with its own event loop (default: 1).",
        )
        parser.add_argument(
            "--no-migrate", action="store_true", help="Do not apply migrations first."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["workers"] < 1:
            raise CommandError("--workers must be 1 or more.")
        _check_port_free(options["host"], options["port"])
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
            # httptools and uvloop: fewer instructions per request than h11 and asyncio's loop;
            # the protocol closes connections that are slow to send their headers.
            http=server.PROTOCOL,
            loop=server.LOOP,
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


def _check_port_free(host: str, port: int) -> None:
    """Fail with one line, before migrating, when the server could not listen."""
    if not 0 <= port <= MAX_PORT:
        raise CommandError(f"--port {port} is not a port number (0 to {MAX_PORT}).")
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise CommandError(f"--host {host!r} is not an address to listen on: {error}.") from None
    family, kind, proto, _, address = addresses[0]
    with socket.socket(family, kind, proto) as probe:
        # As uvicorn binds: a port whose last connections are still closing is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise CommandError(
                    f"Port {port} on {host} is already in use, by another server or another "
                    f"serve; choose another with --port, e.g. --port {port + 1}."
                ) from None
            raise CommandError(
                f"Cannot listen on {host}:{port}: {error.strerror or error}."
            ) from None
