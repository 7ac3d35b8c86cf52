"""Prometheus metrics of the runner, and how a process exposes them.

Several processes (uvicorn workers) can share one set of metrics through prometheus-client's
multiprocess mode: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before the processes
start, and every process's values are summed (counters, histograms) or combined (gauges) at each
scrape.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
)


def multiprocess_directory() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


if (_directory := multiprocess_directory()) is not None:
    # prometheus-client writes a file there as soon as a metric exists, that is, below.
    Path(_directory).mkdir(parents=True, exist_ok=True)

JOB_RUNS = Counter(
    "worker_job_runs_total", "Runs of each periodic job, by outcome.", ["job", "outcome"]
)
JOB_ROWS = Counter("worker_job_rows_total", "Rows the runs of each job affected.", ["job"])
JOB_DURATION = Histogram(
    "worker_job_run_duration_seconds",
    "How long each run took.",
    ["job"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
JOB_SKIPPED = Counter(
    "worker_job_skipped_total", "Runs not made because an earlier one ran late or failed.", ["job"]
)
LOOP_LAG = Gauge(
    "worker_event_loop_lag_seconds",
    "How late the event loop woke a sleeping task, at the last measurement.",
    multiprocess_mode="livemax",
)


def prepare_multiprocess_directory(path: Path) -> None:
    """Create or empty the shared directory before the processes start: files left by an
    earlier run would add its counts to this one's."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()


def registry() -> CollectorRegistry:
    """The registry to expose: every process's values in multiprocess mode, else this one's."""
    if multiprocess_directory() is None:
        return REGISTRY
    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
    return combined


def process_ended() -> None:
    """Forget this process's live gauges (multiprocess mode), as it stops serving."""
    if multiprocess_directory() is not None:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
