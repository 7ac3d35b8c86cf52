"""Plots and Markdown tables from a results file.

Each database has its own files: ``benchmarks-<vendor>.json`` holds the results, and
``benchmarks-<vendor>-<plot>.png`` the plots. The tables go into ``benchmarks.md``, each
between ``<!-- bench:<vendor>:<table> -->`` and ``<!-- /bench:<vendor>:<table> -->``; the
prose around them is left alone. ``python -m bench.report docs/benchmarks-postgresql.json``
redraws the plots and rewrites the tables from a results file.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PLOTS = ("accrual", "memory", "lag", "http")
DOCUMENT = "benchmarks.md"
DPI = 110
VARIANT_STYLE = {
    "seed": ("tab:red", "o"),
    "sync_to_async": ("tab:blue", "s"),
    "native": ("tab:green", "^"),
    "raw": ("black", "D"),
}

# --- Formatting -------------------------------------------------------------------------


def _number(value: float | None, digits: int = 3) -> str:
    """Three significant digits, thousands separated; '-' for nothing."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _met(value: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[value]


# --- Tables -----------------------------------------------------------------------------


def _code(code: dict[str, Any] | None) -> str:
    if not code or not code.get("commit"):
        return "not recorded"
    changed = code.get("uncommitted") or []
    if not changed:
        return f"commit {code['commit']}"
    return f"commit {code['commit']} with uncommitted changes to {', '.join(changed)}"


def _origins(results: dict[str, Any]) -> list[str]:
    return [
        f"- Tables of the suite `{suite}` kept from an earlier run: `{origin['command']}`, "
        f"finished {origin['finished_at']}, {_code(origin.get('code'))}"
        for suite, origin in (results.get("origins") or {}).items()
    ]


def machine_block(results: dict[str, Any]) -> str:
    machine = results["machine"]
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    return "\n".join(
        [
            f"- Date: {machine['date']} (finished {results.get('finished_at', '-')})",
            f"- CPU: {machine['cpus']} cores ({machine.get('cpu_model') or 'unknown model'}), "
            f"memory {machine['memory_gib']} GiB, {machine['os']}",
            f"- Database: {machine['database']}; Python {machine['python']}; {packages}",
            f"- Code: {_code(machine.get('code'))}",
            f"- Load average (1, 5, 15 min) at start {machine['load_average_at_start']}, "
            f"at end {machine.get('load_average_at_end', '-')}",
            f"- Command: `{results['command']}`",
            *_origins(results),
        ]
    )


def accrual_block(results: dict[str, Any]) -> str:
    rows = []
    for row in results["accrual"]["results"]:
        seconds = _number(row["seconds"])
        if row["runs"] > 1:
            seconds += f" ({_number(row['seconds_min'])}-{_number(row['seconds_max'])})"
        note = ""
        if row["extrapolated"]:
            note = (
                f"extrapolated: all {row['n']:,} rows fetched, {row['measured_rows']:,} saved "
                f"in {_number(row['measured_seconds'])} s"
            )
        rows.append(
            [
                f"{row['n']:,}",
                row["label"],
                seconds,
                f"{row['rows']:,}",
                _number(row["rows_per_second"]),
                _number(row["memory_mib"]),
                note,
            ]
        )
    return _table(
        ["N", "variant", "seconds (min-max)", "rows moved", "rows/s", "peak MiB", "note"], rows
    )


def ratios_block(results: dict[str, Any]) -> str:
    rows = [
        [
            f"{row['n']:,}",
            _number(row["a_over_b"]) + (" (extrapolated)" if row["a_extrapolated"] else ""),
            _number(row["a_over_c"]),
            _number(row["b_over_d"]),
            _number(row["c_over_d"]),
            _number(row.get("b_over_d_paired")),
            _number(row.get("c_over_d_paired")),
        ]
        for row in results["accrual"]["ratios"]
    ]
    return _table(["N", "a / b", "a / c", "b / d", "c / d", "b / d paired", "c / d paired"], rows)


def lag_block(results: dict[str, Any]) -> str:
    rows = [
        [
            row["label"],
            f"{row['rows']:,}",
            _number(row["seconds"]),
            str(row["samples"]),
            _number(row["lag_max_ms"]),
            _number(row["lag_p99_ms"]),
            _number(row["lag_p50_ms"]),
            _number(row["idle_p99_ms"]),
        ]
        for row in results["lag"]["modes"]
    ]
    return _table(
        [
            "mode",
            "rows moved",
            "accrual s",
            "probes",
            "lag max ms",
            "lag p99 ms",
            "lag p50 ms",
            "idle p99 ms",
        ],
        rows,
    )


STACK_NAMES = {"asgi": "uvicorn, async API", "wsgi": "gunicorn, sync views"}


def http_medians(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per scenario, connections and stack: the median req/s over the rounds, and the server's
    CPU per request over all of them."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for row in results["http"]["results"]:
        groups.setdefault((row["scenario"], row["connections"], row["stack"]), []).append(row)
    medians = []
    for (scenario, connections, stack), rows in groups.items():
        rates = sorted(row["rps"] for row in rows)
        middle = len(rates) // 2
        rps = rates[middle] if len(rates) % 2 else (rates[middle - 1] + rates[middle]) / 2
        requests = sum(row["requests"] for row in rows)
        cpu = sum(row["server_cpu_seconds"] for row in rows)
        if rows[0].get("worker_cpu_seconds") is not None:
            cpu += sum(row["worker_cpu_seconds"] or 0 for row in rows)
        medians.append(
            {
                "scenario": scenario,
                "connections": connections,
                "stack": stack,
                "rounds": len(rows),
                "rps": rps,
                "cpu_ms_per_request": 1000 * cpu / requests if requests else None,
            }
        )
    return medians


def http_side_by_side(results: dict[str, Any]) -> str:
    medians = {(m["scenario"], m["connections"], m["stack"]): m for m in http_medians(results)}
    rows = []
    for scenario, connections in dict.fromkeys((k[0], k[1]) for k in medians):
        asgi, wsgi = (
            medians.get((scenario, connections, "asgi")),
            medians.get((scenario, connections, "wsgi")),
        )
        if asgi is None or wsgi is None:
            continue
        rows.append(
            [
                scenario,
                str(connections),
                str(asgi["rounds"]),
                _number(asgi["rps"]),
                _number(wsgi["rps"]),
                f"{asgi['rps'] / wsgi['rps']:.2f}x",
                _number(asgi["cpu_ms_per_request"]),
                _number(wsgi["cpu_ms_per_request"]),
            ]
        )
    return _table(
        [
            "scenario",
            "conn.",
            "rounds",
            "uvicorn req/s (median)",
            "gunicorn req/s (median)",
            "ratio",
            "uvicorn CPU ms/req",
            "gunicorn CPU ms/req",
        ],
        rows,
    )


def http_block(results: dict[str, Any]) -> str:
    rows = []
    for row in results["http"]["results"]:
        accrual = "-"
        if row["accrual_runs"]:
            accrual = f"{row['accrual_runs']} ({_number(row['accrual_seconds'])} s)"
        errors = str(row["errors"])
        if row["errors"]:
            errors += " (" + ", ".join(f"{k} {v}" for k, v in row["errors_by_kind"].items()) + ")"
        rows.append(
            [
                str(row.get("round", 1)),
                row["scenario"],
                STACK_NAMES[row["stack"]],
                str(row["connections"]),
                _number(row["rps"]),
                _number(row["p50_ms"]),
                _number(row["p99_ms"]),
                errors,
                _number(row["server_cpu_seconds"]),
                _number(row["client_cpu_seconds"]),
                _number(row["cores_busy"]),
                accrual,
            ]
        )
    every_run = _table(
        [
            "round",
            "scenario",
            "stack",
            "conn.",
            "req/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "server CPU s",
            "client CPU s",
            "cores busy",
            "accruals (time)",
        ],
        rows,
    )
    side_by_side = http_side_by_side(results)
    return (
        "Side by side (gunicorn's CPU includes the runworker beside it):\n\n"
        f"{side_by_side}\n\nEvery run:\n\n{every_run}"
    )


def stops_block(results: dict[str, Any]) -> str:
    rows = []
    for row in results["stops"]["modes"]:
        seconds = f"{_number(row['seconds'])} ({_number(row['seconds_min'])}-"
        seconds += f"{_number(row['seconds_max'])})"
        rows.append(
            [
                row["label"],
                f"{row['n']:,}",
                seconds,
                str(row["stops"]),
                _number(row["p50_ms"]),
                _number(row["p99_ms"]),
                ", ".join(_number(value) for value in row["run_p99_ms"]),
                _number(row["max_ms"]),
            ]
        )
    return _table(
        [
            "accrual",
            "running rows",
            "accrual s (min-max)",
            "stops",
            "p50 ms",
            "p99 ms",
            "p99 ms of each run",
            "max ms",
        ],
        rows,
    )


def parallel_block(results: dict[str, Any]) -> str:
    rows = []
    for row in results["parallel"]["results"]:
        deadlocks = "-" if row["deadlocks"] is None else str(row["deadlocks"])
        rows.append(
            [
                str(row["processes"]),
                f"{row['n']:,}",
                f"{_number(row['seconds'])} ({_number(row['seconds_min'])}-"
                f"{_number(row['seconds_max'])})",
                f"{row['rows']:,.0f} ({row['rows_min']:,}-{row['rows_max']:,})",
                _number(row["work"]),
                deadlocks,
                str(len(row["errors"])),
            ]
        )
    return _table(
        [
            "processes",
            "running rows",
            "wall s per pass (min-max)",
            "rows moved, all processes (min-max)",
            "rows moved / N",
            "deadlocks (server)",
            "errors",
        ],
        rows,
    )


def targets_block(results: dict[str, Any]) -> str:
    rows = [
        [target["name"], target["goal"], target["measured"] or "-", _met(target["met"])]
        for target in results["targets"]
    ]
    return _table(["target", "goal", "measured", "verdict"], rows)


BLOCKS: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "machine": ("machine", machine_block),
    "accrual": ("accrual", accrual_block),
    "ratios": ("accrual", ratios_block),
    "lag": ("lag", lag_block),
    "http": ("http", http_block),
    "stops": ("stops", stops_block),
    "parallel": ("parallel", parallel_block),
    "targets": ("targets", targets_block),
}


def results_name(vendor: str) -> str:
    return f"benchmarks-{vendor}.json"


def plot_name(vendor: str, plot: str) -> str:
    return f"benchmarks-{vendor}-{plot}.png"


def blocks(results: dict[str, Any]) -> dict[str, str]:
    """The generated tables, by block name (``<vendor>:<table>``)."""
    return {
        f"{results['vendor']}:{name}": render(results)
        for name, (section, render) in BLOCKS.items()
        if results.get(section)
    }


def update_document(path: Path, generated: dict[str, str]) -> bool:
    """Replace each generated block of the document; False if it does not exist."""
    if not path.exists():
        return False
    text = path.read_text()
    for name, body in generated.items():
        start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
        pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(end), flags=re.DOTALL)
        block = f"{start}\n{body}\n{end}"
        # Spliced by hand, not by sub(): a replacement string would read the tables'
        # backslashes as escapes.
        found = pattern.search(text)
        if found is not None:
            text = text[: found.start()] + block + text[found.end() :]
    path.write_text(text)
    return True


# --- Plots ------------------------------------------------------------------------------


def _accrual_plot(results: dict[str, Any], path: Path, key: str, ylabel: str) -> None:
    figure, axes = plt.subplots(figsize=(7, 4.5))
    rows = results["accrual"]["results"]
    for variant, (colour, marker) in VARIANT_STYLE.items():
        points = sorted((r for r in rows if r["variant"] == variant), key=lambda r: r["n"])
        if not points:
            continue
        label = points[0]["label"]
        axes.plot(
            [p["n"] for p in points],
            [p[key] for p in points],
            color=colour,
            marker=marker,
            label=label,
        )
        extrapolated = [p for p in points if p["extrapolated"]]
        if extrapolated and key == "seconds":
            axes.plot(
                [p["n"] for p in extrapolated],
                [p[key] for p in extrapolated],
                linestyle="none",
                marker=marker,
                markersize=11,
                markerfacecolor="white",
                color=colour,
                label=f"{label.split(' ')[0]} extrapolated",
            )
    axes.set_xscale("log")
    if key == "seconds":
        axes.set_yscale("log")
    else:
        axes.set_yscale("symlog", linthresh=1.0)
        axes.set_ylim(bottom=0)
    axes.set_xlabel("running timesheets (N)")
    axes.set_ylabel(ylabel)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title(f"Accrual, {results['machine']['database']}")
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def _lag_plot(results: dict[str, Any], path: Path) -> None:
    modes = results["lag"]["modes"]
    figure, all_axes = plt.subplots(len(modes), 1, figsize=(7, 2.4 * len(modes)), squeeze=False)
    for axes, mode in zip(all_axes[:, 0], modes, strict=True):
        times = [t for t, _ in mode["timeline"]]
        lags = [lag for _, lag in mode["timeline"]]
        axes.axvspan(
            0, mode["first_run_seconds"], color="tab:orange", alpha=0.15, label="accrual running"
        )
        axes.plot(times, lags, linewidth=0.8, color="tab:blue")
        axes.axhline(20, color="tab:red", linestyle="--", linewidth=0.8, label="20 ms")
        axes.axhline(5, color="tab:red", linestyle=":", linewidth=0.8, label="5 ms")
        axes.set_title(f"{mode['label']}: {mode['rows']:,} rows", fontsize=9)
        axes.set_ylabel("lag (ms)")
        axes.set_yscale("symlog", linthresh=1.0)
        axes.set_ylim(bottom=0)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7, loc="upper right")
    all_axes[-1, 0].set_xlabel("seconds since the accrual started")
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def _http_plot(results: dict[str, Any], path: Path) -> None:
    figure, (rps_axes, cpu_axes) = plt.subplots(1, 2, figsize=(10, 4))
    rows = http_medians(results)
    series = sorted({(r["stack"], r["scenario"]) for r in rows})
    for stack, scenario in series:
        points = sorted(
            (r for r in rows if r["stack"] == stack and r["scenario"] == scenario),
            key=lambda r: r["connections"],
        )
        name = "uvicorn, async API" if stack == "asgi" else "gunicorn, sync views"
        style = {
            "color": "tab:blue" if stack == "asgi" else "tab:orange",
            "linestyle": "-" if scenario == "idle" else "--",
            "marker": "o" if scenario == "idle" else "s",
            "label": f"{name}, {scenario}",
        }
        connections = [p["connections"] for p in points]
        rps_axes.plot(connections, [p["rps"] for p in points], **style)
        cpu_axes.plot(connections, [p["cpu_ms_per_request"] for p in points], **style)
    for axes, ylabel in (
        (rps_axes, "successful requests / s"),
        (cpu_axes, "server CPU per request (ms)"),
    ):
        axes.set_xscale("log", base=2)
        axes.set_xlabel("concurrent connections")
        axes.set_ylabel(ylabel)
        axes.set_ylim(bottom=0)
        axes.grid(True, which="both", alpha=0.3)
    rps_axes.legend(fontsize=8)
    figure.suptitle(
        f"HTTP: start, get, stop, get; {results['machine']['database']} (median of rounds)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def plot(results: dict[str, Any], directory: Path) -> list[str]:
    """Draw every plot the results have data for; return the file names written."""
    vendor = results["vendor"]
    written = []
    if results.get("accrual"):
        accrual, memory = plot_name(vendor, "accrual"), plot_name(vendor, "memory")
        _accrual_plot(results, directory / accrual, "seconds", "seconds per accrual")
        _accrual_plot(results, directory / memory, "memory_mib", "peak memory growth (MiB)")
        written += [accrual, memory]
    if results.get("lag"):
        written.append(plot_name(vendor, "lag"))
        _lag_plot(results, directory / written[-1])
    if results.get("http"):
        written.append(plot_name(vendor, "http"))
        _http_plot(results, directory / written[-1])
    return written


def main(argv: list[str]) -> int:
    path = Path(argv[1])
    results = json.loads(path.read_text())
    plot(results, path.parent)
    update_document(path.parent / DOCUMENT, blocks(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
