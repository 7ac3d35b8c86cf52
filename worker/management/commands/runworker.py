"""``manage.py runworker``: run only the periodic jobs, in this process, until stopped."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from django.conf import settings
from django.core.management.base import CommandParser
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

    def handle(self, *args: Any, **options: Any) -> None:
        port: int = options["metrics_port"]
        if port is None:
            port = settings.WORKER_METRICS_PORT
        server = None
        if port:
            server, _ = start_http_server(port, registry=metrics.registry())
            logger.info("metrics_served", port=port)
        try:
            asyncio.run(self._run(Runner(jobs=discover())))
        finally:
            if server is not None:
                server.shutdown()

    async def _run(self, runner: Runner) -> None:
        with stop_on_signals(asyncio.get_running_loop(), stop=runner.request_stop):
            await runner.run()
