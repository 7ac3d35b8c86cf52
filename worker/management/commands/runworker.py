"""``manage.py runworker``: run only the periodic jobs, in this process, until stopped."""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand

from worker.registry import discover
from worker.runner import Runner
from worker.signals import stop_on_signals


class Command(BaseCommand):
    help = (
        "Run the periodic jobs until SIGTERM or SIGINT. The first signal stops gracefully "
        "(runs in progress finish, a final accrual is written); a second exits at once."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        asyncio.run(self._run(Runner(jobs=discover())))

    async def _run(self, runner: Runner) -> None:
        with stop_on_signals(asyncio.get_running_loop(), stop=runner.request_stop):
            await runner.run()
