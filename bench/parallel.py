"""Several processes accruing the same rows at once: one full pass each, started together.

For each number of processes P, P child processes (``bench.child``, task ``pass``) each run
the product's job over every running timesheet, all starting at the same wall-clock instant.
Batches skip rows another process holds, so the processes share the rows instead of waiting
for each other; a row one process has moved another may move again, a little later (the job
moves every watermark behind now), which the total of rows moved shows. Wall time runs from
the first start to the last finish. Deadlocks are counted twice: from the server's own
counter (``pg_stat_database.deadlocks``, PostgreSQL) and from the processes' exceptions.
Each P runs ``repeat`` times, interleaved with the others.
"""

from __future__ import annotations

import time
from typing import Any

from django.db import connection

from bench.runs import prepare, run_children
from bench.stats import median, rounded

STARTUP = 3.0  # seconds given to the processes to start before they begin together
STATS_DELAY = 1.0  # seconds for the server's backends to report their counters once gone


def deadlocks() -> int | None:
    """The server's count of deadlocks detected in this database so far (None on SQLite)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def _pass(processes: int) -> dict[str, Any]:
    prepare()
    before = deadlocks()
    start_at = time.time() + STARTUP
    results = run_children([{"task": "pass", "start_at": start_at}] * processes)
    time.sleep(STATS_DELAY)
    after = deadlocks()
    return {
        "seconds": max(r["finished"] for r in results) - min(r["started"] for r in results),
        "start_spread": max(r["started"] for r in results) - min(r["started"] for r in results),
        "rows": sum(r["rows"] for r in results),
        "rows_each": [r["rows"] for r in results],
        "errors": [r["error"] for r in results if r["error"]],
        "deadlocks": None if before is None or after is None else after - before,
    }


def measure(*, n: int, processes: list[int], repeat: int) -> list[dict[str, Any]]:
    runs: dict[int, list[dict[str, Any]]] = {p: [] for p in processes}
    for _ in range(repeat):
        for p in processes:
            runs[p].append(_pass(p))
    summaries = []
    for p in processes:
        seconds = [run["seconds"] for run in runs[p]]
        counted = [run["deadlocks"] for run in runs[p] if run["deadlocks"] is not None]
        summaries.append(
            {
                "processes": p,
                "n": n,
                "runs": len(runs[p]),
                "seconds": rounded(median(seconds), 6),
                "seconds_min": rounded(min(seconds), 6),
                "seconds_max": rounded(max(seconds), 6),
                "start_spread_max": rounded(max(run["start_spread"] for run in runs[p]), 6),
                "rows": rounded(median([run["rows"] for run in runs[p]]), 1),
                "rows_min": min(run["rows"] for run in runs[p]),
                "rows_max": max(run["rows"] for run in runs[p]),
                "work": rounded(median([run["rows"] / n for run in runs[p]]), 3),
                "errors": [error for run in runs[p] for error in run["errors"]],
                "deadlocks": sum(counted) if counted else None,
            }
        )
    return summaries
