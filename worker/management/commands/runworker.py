"""``manage.py runworker``: run only the periodic jobs, in this process, until stopped."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from prometheus_client import start_http_server

from config.commands import ServiceCommand
from worker import metrics
from worker.registry import discover
from worker.runner import Runner
from worker.signals import stop_on_signals

logger = structlog.get_logger("worker")


class Command(ServiceCommand):
    help = (
        "Run the periodic jobs until SIGTERM or SIGINT. The first signal stops gracefully "
        "(runs in progress finish, a final accrual is written); a second exits at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=None,
            help="Serve Prometheus metrics on this port (default: WORKER_METRICS_PORT; 0: none).",
        )
        parser.add_argument(
            "--metrics-host",
            default=None,
            help="The address the metrics port listens on (default: WORKER_METRICS_HOST).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        port: int = options["metrics_port"]
        if port is None:
            port = settings.WORKER_METRICS_PORT
        host: str = options["metrics_host"] or settings.WORKER_METRICS_HOST
        server = None
        if port:
            try:
                server, _ = start_http_server(port, addr=host, registry=metrics.registry())
            except OSError as error:
                raise CommandError(
                    f"Cannot serve metrics on {host}:{port}: {error.strerror or error}. "
                    "Choose another --metrics-port (WORKER_METRICS_PORT) or --metrics-host."
                ) from None
            logger.info("metrics_served", host=host, port=port)
        try:
            asyncio.run(self._run(Runner(jobs=discover())))
        finally:
            if server is not None:
                server.shutdown()

    async def _run(self, runner: Runner) -> None:
        with stop_on_signals(asyncio.get_running_loop(), stop=runner.request_stop):
            await runner.run()
