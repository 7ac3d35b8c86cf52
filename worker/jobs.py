"""The worker's own periodic job: each runner tells the database how it is, every few seconds.

The staff dashboard reads these heartbeats, so it shows every process's runner, whichever
process serves the page.
"""

from __future__ import annotations

import socket
from datetime import datetime

from worker.exceptions import deferred_while_busy
from worker.registry import job
from worker.runner import current_runner
from worker.selectors import HEARTBEAT_INTERVAL
from worker.services import runner_process_abeat


@job(name="runner_heartbeat", interval=HEARTBEAT_INTERVAL, run_at_shutdown=True)
async def runner_heartbeat(now: datetime) -> int:
    runner = current_runner.get()
    assert runner.started_at is not None  # set before any job runs
    with deferred_while_busy():
        await runner_process_abeat(
            host=socket.gethostname(), started_at=runner.started_at, status=runner.status()
        )
    return 1
