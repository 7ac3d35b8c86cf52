"""The targets the results are held to, and whether each was met.

A target whose size or suite was not run is reported as not measured (``met`` is None).
"""

from __future__ import annotations

from typing import Any

SPEEDUP_SIZE = 10_000  # rows at which (a) must be SPEEDUP times slower than (b)
SPEEDUP = 100.0
# Rows at which the job must stay near the floor, and how near: on PostgreSQL the batched job
# must cost at most 1.2 times the one UPDATE at a million rows.
FLOOR_RATIOS = {100_000: 1.25, 1_000_000: 1.2}
FLOOR_SIZES = tuple(FLOOR_RATIOS)
STOP_P99_MS = 50.0  # a stop sent during an accrual, 99th percentile
MEMORY_SPREAD_MIB = 5.0  # most the peak may grow from the smallest N to the largest
LAG_MAX_MS = 20.0
LAG_P99_MS = 5.0
FLAT_VARIANTS = ("sync_to_async", "native", "raw")
JOB_VARIANTS = ("sync_to_async", "native")


def _target(name: str, goal: str, measured: str | None, met: bool | None) -> dict[str, Any]:
    return {"name": name, "goal": goal, "measured": measured, "met": met}


def _speedup(ratios: dict[int, dict[str, Any]]) -> dict[str, Any]:
    goal = f"(a) / (b) >= {SPEEDUP:g} at N = {SPEEDUP_SIZE:,}"
    row = ratios.get(SPEEDUP_SIZE)
    if row is None or row["a_over_b"] is None:
        return _target("speedup over row-by-row", goal, None, None)
    note = " (a extrapolated)" if row["a_extrapolated"] else ""
    return _target(
        "speedup over row-by-row",
        goal,
        f"{row['a_over_b']:g}x{note}",
        row["a_over_b"] >= SPEEDUP,
    )


def _floor(ratios: dict[int, dict[str, Any]], size: int, variant: str) -> dict[str, Any]:
    """Judged on the paired ratio (see ``bench.accrual.paired_ratio``) where the results have
    it, the ratio of the medians shown beside it; on the latter in older results."""
    key = "b_over_d" if variant == "sync_to_async" else "c_over_d"
    letter = "b" if variant == "sync_to_async" else "c"
    goal = f"({letter}) / (d) <= {FLOOR_RATIOS[size]:g} at N = {size:,}"
    row = ratios.get(size)
    if row is None or row[key] is None:
        return _target(f"near the floor, {variant}", goal, None, None)
    paired = row.get(f"{key}_paired")
    if paired is None:
        measured, judged = f"{row[key]:g}x", row[key]
    else:
        goal += ", repeat by repeat"
        measured, judged = f"{paired:g}x (medians' ratio {row[key]:g}x)", paired
    return _target(f"near the floor, {variant}", goal, measured, judged <= FLOOR_RATIOS[size])


def _memory(accrual: list[dict[str, Any]]) -> dict[str, Any]:
    goal = f"peak memory of (b), (c), (d) grows by at most {MEMORY_SPREAD_MIB:g} MiB over N"
    spreads = {}
    for variant in FLAT_VARIANTS:
        values = [row["memory_mib"] for row in accrual if row["variant"] == variant]
        if len(values) >= 2:
            spreads[variant] = max(values) - min(values)
    if not spreads:
        return _target("memory flat in N", goal, None, None)
    measured = ", ".join(f"{variant} {spread:.2f} MiB" for variant, spread in spreads.items())
    return _target("memory flat in N", goal, measured, max(spreads.values()) <= MEMORY_SPREAD_MIB)


def _lag(lag: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    goal = f"lag max <= {LAG_MAX_MS:g} ms and p99 <= {LAG_P99_MS:g} ms"
    row = next((row for row in lag if row["mode"] == mode), None)
    if row is None or row["lag_max_ms"] is None:
        return _target(f"event-loop lag, {mode}", goal, None, None)
    return _target(
        f"event-loop lag, {mode}",
        goal,
        f"max {row['lag_max_ms']:g} ms, p99 {row['lag_p99_ms']:g} ms at N = {row['n']:,}",
        row["lag_max_ms"] <= LAG_MAX_MS and row["lag_p99_ms"] <= LAG_P99_MS,
    )


def _stops(modes: list[dict[str, Any]]) -> dict[str, Any]:
    goal = f"p99 <= {STOP_P99_MS:g} ms for stops sent during a batched accrual"
    row = next((row for row in modes if row["mode"] == "batched"), None)
    if row is None or row["p99_ms"] is None:
        return _target("stop latency during an accrual", goal, None, None)
    before = next((r for r in modes if r["mode"] == "single" and r["p99_ms"] is not None), None)
    measured = f"p99 {row['p99_ms']:g} ms at N = {row['n']:,}"
    if before is not None:
        measured += f" (one UPDATE: {before['p99_ms']:g} ms)"
    return _target("stop latency during an accrual", goal, measured, row["p99_ms"] <= STOP_P99_MS)


def _parallel(passes: list[dict[str, Any]]) -> dict[str, Any]:
    goal = "no deadlock and no error with several processes accruing the same rows"
    if not passes:
        return _target("parallel accruals", goal, None, None)
    errors = sum(len(row["errors"]) for row in passes)
    counted = [row["deadlocks"] for row in passes if row["deadlocks"] is not None]
    deadlocks = sum(counted) if counted else None
    processes = ", ".join(str(row["processes"]) for row in passes)
    measured = f"{processes} processes: {errors} errors"
    if deadlocks is not None:
        measured += f", {deadlocks} deadlocks counted by the server"
    return _target("parallel accruals", goal, measured, errors == 0 and not deadlocks)


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    accrual = results.get("accrual") or {}
    ratios = {row["n"]: row for row in accrual.get("ratios", [])}
    lag = (results.get("lag") or {}).get("modes", [])
    return [
        _speedup(ratios),
        *(_floor(ratios, size, variant) for size in FLOOR_SIZES for variant in JOB_VARIANTS),
        _memory(accrual.get("results", [])),
        *(_lag(lag, mode) for mode in JOB_VARIANTS),
        _stops((results.get("stops") or {}).get("modes", [])),
        _parallel((results.get("parallel") or {}).get("results", [])),
    ]
