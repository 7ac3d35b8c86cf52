"""Stop requests sent while an accrual runs: how long each waits, batched accrual or not.

A child process (``bench.child``, task ``stops``) runs an accrual of every running timesheet
in one thread and, in another, stops timers one after another, ``interval`` seconds apart, each
timed, until the accrual has committed. The timers are drawn at random from the whole table,
so that some are in the batch being moved, some behind it and some ahead. Two modes, run
``repeat`` times each, interleaved:

- ``single``: the old behaviour, every running row in one UPDATE, which holds the lock of
  each row it has moved until it commits: a stop of such a row waits for the whole UPDATE;
- ``batched``: the product's job, which holds the locks of one batch at a time.

A stopped timer stays stopped: each run stops timers no earlier run stopped, and the table
holds that many fewer running timers for the runs after it.
"""

from __future__ import annotations

import random
from typing import Any

from django.db import connection

from bench.rows import TIMESHEETS
from bench.runs import prepare, run_child
from bench.stats import median, percentile, rounded

MODES = ("single", "batched")
LABELS = {
    "single": "one UPDATE over every running row (before)",
    "batched": "the job, in batches (now)",
}
SEED = 20_261_207  # the same timers are drawn in every run of the harness


def _ms(value: float | None) -> float | None:
    return rounded(None if value is None else value * 1000, 3)


def _running_ids() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {TIMESHEETS} WHERE status = 'running'")  # noqa: S608
        return [row[0] for row in cursor.fetchall()]


def measure(*, n: int, repeat: int, interval: float, max_stops: int) -> list[dict[str, Any]]:
    """Each mode ``repeat`` times, interleaved; the latencies of its runs pooled."""
    running = _running_ids()
    draw = random.Random(SEED)  # noqa: S311  (reproducible, not secret)
    drawn = draw.sample(running, k=min(len(running), 2 * repeat * max_stops))
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    used = 0
    for _ in range(repeat):
        for mode in MODES:
            prepare()
            spec = {
                "task": "stops",
                "variant": mode,
                "ids": drawn[used : used + max_stops],
                "interval": interval,
            }
            result = run_child(spec)
            used += len(result["stopped"])
            runs[mode].append(result)
    summaries = []
    for mode in MODES:
        latencies = [value for run in runs[mode] for value in run["latencies"]]
        seconds = [run["seconds"] for run in runs[mode]]
        summaries.append(
            {
                "mode": mode,
                "label": LABELS[mode],
                "n": n,
                "runs": len(runs[mode]),
                "rows": [run["rows"] for run in runs[mode]],
                "seconds": rounded(median(seconds), 6),
                "seconds_min": rounded(min(seconds), 6),
                "seconds_max": rounded(max(seconds), 6),
                "stops": len(latencies),
                "interval_ms": _ms(interval),
                "p50_ms": _ms(percentile(latencies, 0.50)),
                "p99_ms": _ms(percentile(latencies, 0.99)),
                "max_ms": _ms(max(latencies) if latencies else None),
                # Each run's own p99: how much the pooled figure varies from run to run.
                "run_p99_ms": [_ms(percentile(run["latencies"], 0.99)) for run in runs[mode]],
                "ran_out": any(run["ran_out"] for run in runs[mode]),
            }
        )
    return summaries
