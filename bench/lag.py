"""The event loop's lag while an accrual runs, in each way of running it.

A probe task (``bench.probe``) sleeps 10 ms at a time on the loop that awaits the accrual and
records how late it wakes: first with the loop idle, then while the accrual over every running
row is in progress. One accrual gives about a hundred probes, too few for a 99th percentile, so
each mode runs ``repeat`` times and the probes are pooled. The row-by-row loop is included for
contrast, once; above ``seed_max_rows`` it fetches every row but saves only that many, as in
the accrual benchmark.
"""

from __future__ import annotations

from typing import Any

from bench.accrual import LABELS
from bench.probe import PROBE_INTERVAL
from bench.runs import prepare, run_child
from bench.stats import median, percentile, rounded

MODES = ("sync_to_async", "native", "seed")
IDLE = 0.3  # seconds of probing before the accrual starts
TAIL = 0.2  # seconds of probing after it ends


def _ms(value: float | None) -> float | None:
    return rounded(None if value is None else value * 1000, 3)


def measure(*, n: int, repeat: int, seed_max_rows: int, seed: bool = True) -> list[dict[str, Any]]:
    """Each mode ``repeat`` times (the row-by-row loop once); the probes of its runs pooled."""
    results = []
    for mode in MODES:
        if mode == "seed" and not seed:
            continue
        save_limit = seed_max_rows if mode == "seed" and n > seed_max_rows else None
        runs = []
        for _ in range(1 if mode == "seed" else repeat):
            prepare()
            spec = {
                "task": "lag",
                "variant": mode,
                "save_limit": save_limit,
                "interval": PROBE_INTERVAL,
                "idle": IDLE,
                "tail": TAIL,
            }
            runs.append(run_child(spec))
        lags = [lag for run in runs for lag in run["lags"]]
        idle = [lag for run in runs for lag in run["idle_lags"]]
        results.append(
            {
                "mode": mode,
                "label": LABELS[mode],
                "n": n,
                "runs": len(runs),
                "rows": runs[0]["rows"],
                "seconds": rounded(median([run["seconds"] for run in runs]), 6),
                "samples": len(lags),
                "lag_max_ms": _ms(max(lags) if lags else None),
                "lag_p99_ms": _ms(percentile(lags, 0.99)),
                "lag_p50_ms": _ms(percentile(lags, 0.50)),
                "idle_max_ms": _ms(max(idle) if idle else None),
                "idle_p99_ms": _ms(percentile(idle, 0.99)),
                # The first run over time, for the plot: (seconds since it started, lag ms).
                "first_run_seconds": rounded(runs[0]["seconds"], 6),
                "timeline": [[round(t, 4), round(lag * 1000, 3)] for t, lag in runs[0]["timeline"]],
            }
        )
    return results
