"""The accrual at N running timesheets, four ways, on the same rows.

(a) ``seed``: the row-by-row loop of ``bench.seed_pattern`` in ``sync_to_async``;
(b) ``sync_to_async``: ``timesheet_accrue_running`` (one UPDATE) through ``sync_to_async``;
(c) ``native``: ``timesheet_aaccrue_running`` through Django's async ORM;
(d) ``raw``: the floor, the same UPDATE by hand through the driver (``bench.floor``).

(b), (c) and (d) run ``repeat`` times each, interleaved, and report the median. The loop (a)
runs once; above ``seed_max_rows`` it still fetches every row but saves only that many, and its
time is extrapolated from their pace (and marked so).
"""

from __future__ import annotations

from typing import Any

from bench.runs import prepare, run_child
from bench.stats import median, ratio, rounded

LABELS = {
    "seed": "(a) row-by-row save(), sync_to_async",
    "sync_to_async": "(b) job, sync_to_async",
    "native": "(c) job, native async ORM",
    "raw": "(d) floor: one raw UPDATE",
}
REPEATED = ("raw", "sync_to_async", "native")


def _summary(n: int, variant: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [run["seconds"] for run in runs]
    typical = median(seconds)
    first = runs[0]
    summary: dict[str, Any] = {
        "n": n,
        "variant": variant,
        "label": LABELS[variant],
        "seconds": rounded(typical, 6),
        "seconds_min": rounded(min(seconds), 6),
        "seconds_max": rounded(max(seconds), 6),
        "seconds_each": [rounded(value, 6) for value in seconds],  # in the order run
        "runs": len(runs),
        "rows": first["rows"],
        "rows_per_second": rounded(n / typical if typical else None, 1),
        "memory_mib": rounded(max(run["memory_mib"] for run in runs), 2),
        "memory_method": first["memory_method"],
        "extrapolated": bool(first.get("extrapolated")),
    }
    if summary["extrapolated"]:
        summary["measured_rows"] = first["rows"]
        summary["measured_seconds"] = rounded(first["measured_seconds"], 6)
        summary["fetch_seconds"] = rounded(first["fetch_seconds"], 6)
    return summary


def measure(*, n: int, repeat: int, seed_max_rows: int, seed: bool = True) -> list[dict[str, Any]]:
    """Run every variant at the N running rows the table holds now; one summary per variant."""
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in REPEATED}
    for _ in range(repeat):
        for variant in REPEATED:
            prepare()
            runs[variant].append(run_child({"task": "accrual", "variant": variant}))
    summaries = [_summary(n, variant, runs[variant]) for variant in REPEATED]
    if seed:
        prepare()
        save_limit = seed_max_rows if n > seed_max_rows else None
        result = run_child({"task": "accrual", "variant": "seed", "save_limit": save_limit})
        summaries.insert(0, _summary(n, "seed", [result]))
    return summaries


def paired_ratio(job: list[float], floor: list[float]) -> float | None:
    """The median, over the repeats, of the job's time over the floor's in the same repeat.

    Each repeat runs the floor, then each job variant, one after the other: a machine whose
    speed drifts during the run slows both sides of a repeat's ratio alike, where it can move
    the two medians apart.
    """
    return median([j / f for j, f in zip(job, floor, strict=True) if f > 0])


def ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per N: how much slower (a) is than (b), and (b) and (c) than the floor (d), as the ratio
    of the medians and paired repeat by repeat."""
    by_key = {(row["n"], row["variant"]): row for row in results}
    sizes = sorted({row["n"] for row in results})

    def seconds(n: int, variant: str) -> float | None:
        row = by_key.get((n, variant))
        return None if row is None else row["seconds"]

    def paired(n: int, variant: str) -> float | None:
        job, floor = by_key.get((n, variant)), by_key.get((n, "raw"))
        if job is None or floor is None or "seconds_each" not in job:
            return None
        return rounded(paired_ratio(job["seconds_each"], floor["seconds_each"]), 3)

    return [
        {
            "n": n,
            "a_over_b": rounded(ratio(seconds(n, "seed"), seconds(n, "sync_to_async")), 2),
            "a_over_c": rounded(ratio(seconds(n, "seed"), seconds(n, "native")), 2),
            "b_over_d": rounded(ratio(seconds(n, "sync_to_async"), seconds(n, "raw")), 3),
            "c_over_d": rounded(ratio(seconds(n, "native"), seconds(n, "raw")), 3),
            "b_over_d_paired": paired(n, "sync_to_async"),
            "c_over_d_paired": paired(n, "native"),
            "a_extrapolated": bool(by_key.get((n, "seed"), {}).get("extrapolated")),
        }
        for n in sizes
    ]
