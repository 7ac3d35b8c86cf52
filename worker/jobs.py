"""The worker's own periodic job: each runner tells the database how it is, every few seconds.

The staff dashboard reads these heartbeats, so it shows every process's runner, whichever
process serves the page.
"""

from __future__ import annotations

import socket
from datetime import datetime

from timesheets.exceptions import DatabaseBusy
from worker.exceptions import JobDeferred
from worker.registry import job
from worker.runner import current_runner
from worker.selectors import HEARTBEAT_INTERVAL
from worker.services import runner_process_abeat


@job(name="runner_heartbeat", interval=HEARTBEAT_INTERVAL, run_at_shutdown=True)
async def runner_heartbeat(now: datetime) -> int:
    runner = current_runner.get()
    assert runner.started_at is not None  # set before any job runs
    try:
        await runner_process_abeat(
            host=socket.gethostname(), started_at=runner.started_at, status=runner.status()
        )
    except DatabaseBusy as busy:
        raise JobDeferred(str(busy)) from busy
    return 1
