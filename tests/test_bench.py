"""The benchmark harness, run end to end at tiny sizes, and the documented results.

The harness is not timed here: the smoke run checks that every suite runs in a database of its
own, that the results file holds what the documentation's tables are made from, and that the
plots are written.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction

from bench import floor, report, targets
from bench.seed_pattern import INCREMENT, accrue_row_by_row
from tests.conftest import at
from timesheets.models import Project, Timesheet
from timesheets.services import timesheet_accrue_running, timesheet_create

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SIZES = (50, 100)
REPEAT = 2  # two runs of each variant: a paired ratio differs from the medians' ratio
SEED_MAX_ROWS = 60  # below the largest size: the loop's time is extrapolated there
LAG_ROWS = 100
LEVELS = (1, 2)
PROCESSES = (1, 2)
STOPS_MAX = 5
VARIANTS = ("seed", "sync_to_async", "native", "raw")
PROSE = "Prose around the tables stays as it is."


def _vendor() -> str:
    engine = settings.DATABASES["default"]["ENGINE"]
    return "sqlite" if engine == "django.db.backends.sqlite3" else "postgresql"


def _server() -> str:
    """Where the harness makes its own database: the server the suite runs on."""
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        return "sqlite"
    password = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
    return (
        f"postgres://{database.get('USER') or 'postgres'}{password}@"
        f"{database.get('HOST') or '127.0.0.1'}:{database.get('PORT') or 5432}/postgres"
    )


def _database_exists(server: str, name: str) -> bool:
    if server == "sqlite":
        return Path(name).exists()
    with psycopg.connect(server) as connection:
        found = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
    return found is not None


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    out = tmp_path_factory.mktemp("bench")
    vendor = _vendor()
    (out / report.DOCUMENT).write_text(
        f"{PROSE}\n\n<!-- bench:{vendor}:accrual -->\nold\n<!-- /bench:{vendor}:accrual -->\n"
        f"\n<!-- bench:{vendor}:targets -->\nold\n<!-- /bench:{vendor}:targets -->\n"
    )
    server = _server()
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--database",
            server,
            "--out",
            str(out),
            "--sizes",
            ",".join(map(str, SIZES)),
            "--repeat",
            str(REPEAT),
            "--seed-max-rows",
            str(SEED_MAX_ROWS),
            "--lag-rows",
            str(LAG_ROWS),
            "--http-seconds",
            "0.5",
            "--http-warmup",
            "0",
            "--http-connections",
            ",".join(map(str, LEVELS)),
            "--http-accrual-rows",
            "100",
            "--http-accrual-tick",
            "0.2",
            "--stops-rows",
            str(max(SIZES)),
            "--stops-max",
            str(STOPS_MAX),
            "--parallel-rows",
            str(max(SIZES)),
            "--parallel-processes",
            ",".join(map(str, PROCESSES)),
        ],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(out)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    name = re.search(r"database (\S+)", completed.stderr)
    assert name is not None, completed.stderr
    assert not _database_exists(server, name.group(1)), "the harness drops its database"
    results: dict[str, Any] = json.loads((out / report.results_name(vendor)).read_text())
    return results, out, completed.stderr


@pytest.mark.slow
def test_the_machine_and_the_command_are_recorded(smoke: tuple[dict[str, Any], Path, str]) -> None:
    results, _, _ = smoke
    machine = results["machine"]
    assert machine["cpus"] == os.cpu_count()
    assert machine["memory_gib"] > 0
    assert machine["python"] == ".".join(map(str, sys.version_info[:3]))
    assert results["vendor"] == _vendor()
    assert machine["database"].startswith(
        {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[_vendor()]
    )
    assert machine["packages"]["django"].startswith("6.")
    assert results["command"].startswith("uv run python -m bench --database ")


@pytest.mark.slow
def test_every_variant_moves_every_row_at_every_size(
    smoke: tuple[dict[str, Any], Path, str],
) -> None:
    results, _, _ = smoke
    found = {(row["n"], row["variant"]): row for row in results["accrual"]["results"]}
    assert set(found) == {(n, variant) for n in SIZES for variant in VARIANTS}
    for (n, variant), row in found.items():
        assert row["seconds"] > 0
        assert row["rows_per_second"] == pytest.approx(n / row["seconds"], rel=0.01)
        assert row["memory_mib"] >= 0
        if variant == "seed" and n > SEED_MAX_ROWS:
            assert row["extrapolated"]
            assert row["rows"] == row["measured_rows"] == SEED_MAX_ROWS
            assert row["seconds"] > row["measured_seconds"]
        else:
            assert not row["extrapolated"]
            assert row["rows"] == n, (n, variant)


@pytest.mark.slow
def test_the_ratios_come_from_the_timings(smoke: tuple[dict[str, Any], Path, str]) -> None:
    results, _, _ = smoke
    seconds = {(row["n"], row["variant"]): row["seconds"] for row in results["accrual"]["results"]}
    each = {
        (row["n"], row["variant"]): row.get("seconds_each") for row in results["accrual"]["results"]
    }
    ratios = {row["n"]: row for row in results["accrual"]["ratios"]}
    assert set(ratios) == set(SIZES)
    for n, row in ratios.items():
        expected = seconds[n, "seed"] / seconds[n, "sync_to_async"]
        assert row["a_over_b"] == pytest.approx(expected, abs=0.01)
        expected = seconds[n, "sync_to_async"] / seconds[n, "raw"]
        assert row["b_over_d"] == pytest.approx(expected, abs=0.001)
        expected = seconds[n, "native"] / seconds[n, "raw"]
        assert row["c_over_d"] == pytest.approx(expected, abs=0.001)
        assert row["a_extrapolated"] == (n > SEED_MAX_ROWS)
        floor = each[n, "raw"]
        for variant, key in (("sync_to_async", "b_over_d_paired"), ("native", "c_over_d_paired")):
            repeats = [job / first for job, first in zip(each[n, variant], floor, strict=True)]
            assert len(repeats) == REPEAT
            assert row[key] == pytest.approx(statistics.median(repeats), abs=0.001)


@pytest.mark.slow
def test_the_lag_is_probed_during_each_mode(smoke: tuple[dict[str, Any], Path, str]) -> None:
    results, _, _ = smoke
    modes = {row["mode"]: row for row in results["lag"]["modes"]}
    assert set(modes) == {"sync_to_async", "native", "seed"}
    assert modes["sync_to_async"]["rows"] == modes["native"]["rows"] == LAG_ROWS
    assert modes["seed"]["rows"] == SEED_MAX_ROWS
    for row in modes.values():
        assert row["samples"] >= 1, "the probe in progress when the accrual ends counts"
        assert row["lag_max_ms"] >= row["lag_p99_ms"] >= row["lag_p50_ms"] >= 0
        assert row["idle_p99_ms"] is not None
        assert len(row["timeline"]) > row["samples"], "idle probes before, and after"


@pytest.mark.slow
def test_every_stack_answers_under_load_in_both_scenarios(
    smoke: tuple[dict[str, Any], Path, str],
) -> None:
    results, _, _ = smoke
    found = {
        (row["stack"], row["scenario"], row["connections"]): row
        for row in results["http"]["results"]
    }
    assert set(found) == {
        (stack, scenario, level)
        for stack in ("asgi", "wsgi")
        for scenario in ("idle", "accrual")
        for level in LEVELS
    }
    for key, row in found.items():
        assert row["errors"] == 0, (key, row["errors_by_kind"])
        assert row["requests"] > 0
        assert row["rps"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert set(row["by_operation"]) == {"start", "get", "stop"}
        assert row["server_cpu_seconds"] > 0
    for stack in ("asgi", "wsgi"):
        accruing = [found[stack, "accrual", level] for level in LEVELS]
        assert sum(row["accrual_runs"] for row in accruing) >= 1, stack
        assert sum(row["accrual_rows"] for row in accruing) >= 100, "the extra running rows"
    assert all(found["wsgi", "idle", level]["accrual_runs"] == 0 for level in LEVELS)


@pytest.mark.slow
def test_stops_are_timed_during_each_kind_of_accrual(
    smoke: tuple[dict[str, Any], Path, str],
) -> None:
    results, _, _ = smoke
    modes = {row["mode"]: row for row in results["stops"]["modes"]}
    assert set(modes) == {"single", "batched"}
    for row in modes.values():
        assert row["runs"] == REPEAT
        assert REPEAT <= row["stops"] <= REPEAT * (STOPS_MAX - 1), "an untimed warm-up per run"
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert len(row["run_p99_ms"]) == REPEAT, "each run's own p99"
        assert max(row["run_p99_ms"]) <= row["max_ms"]
        assert row["n"] <= max(SIZES)
        assert all(0 <= moved <= row["n"] for moved in row["rows"])


@pytest.mark.slow
def test_every_number_of_processes_makes_a_full_pass(
    smoke: tuple[dict[str, Any], Path, str],
) -> None:
    results, _, _ = smoke
    found = {row["processes"]: row for row in results["parallel"]["results"]}
    assert set(found) == set(PROCESSES)
    for processes, row in found.items():
        assert row["errors"] == [], processes
        assert row["deadlocks"] == (0 if _vendor() == "postgresql" else None)
        assert row["seconds"] > 0
        # Every running row is moved once at least; a row may be moved again by a peer.
        assert row["rows_min"] >= row["n"] > 0
        assert row["rows_max"] <= processes * row["n"]


@pytest.mark.slow
def test_targets_are_judged_only_where_measured(smoke: tuple[dict[str, Any], Path, str]) -> None:
    results, _, _ = smoke
    verdicts = {target["name"]: target["met"] for target in results["targets"]}
    assert verdicts["speedup over row-by-row"] is None, "no run at 10,000 rows"
    assert verdicts["near the floor, sync_to_async"] is None
    assert verdicts["memory flat in N"] in (True, False)
    assert verdicts["event-loop lag, native"] in (True, False)
    assert verdicts["stop latency during an accrual"] in (True, False)
    assert verdicts["parallel accruals"] is True


@pytest.mark.slow
def test_plots_are_png_files(smoke: tuple[dict[str, Any], Path, str]) -> None:
    results, out, _ = smoke
    assert results["plots"] == [report.plot_name(_vendor(), plot) for plot in report.PLOTS]
    for name in results["plots"]:
        assert (out / name).read_bytes().startswith(PNG_SIGNATURE), name


@pytest.mark.slow
def test_the_tables_of_the_document_are_rewritten(
    smoke: tuple[dict[str, Any], Path, str],
) -> None:
    results, out, _ = smoke
    text = (out / report.DOCUMENT).read_text()
    assert text.startswith(PROSE)
    assert "old" not in text
    assert report.accrual_block(results) in text
    assert report.targets_block(results) in text
    assert "<!-- bench:" not in text.replace(f"<!-- bench:{_vendor()}:", ""), "no other vendor"


def test_a_run_keeps_the_suites_it_left_out_from_the_results_file(tmp_path: Path) -> None:
    from bench.main import _carry_over

    earlier = {
        "vendor": "sqlite",
        "command": "uv run python -m bench --suite accrual,lag",
        "finished_at": "2026-01-01T00:00:00+00:00",
        "machine": {"code": {"commit": "abc1234", "uncommitted": []}},
        "accrual": {"results": ["old"]},
        "lag": {"modes": ["old"]},
    }
    path = tmp_path / report.results_name("sqlite")
    path.write_text(json.dumps(earlier))
    results: dict[str, Any] = {"vendor": "sqlite", "accrual": {"results": ["new"]}}
    _carry_over(results, path)
    assert results["accrual"] == {"results": ["new"]}, "what this run measured wins"
    assert results["lag"] == {"modes": ["old"]}
    assert results["origins"] == {
        "lag": {
            "command": earlier["command"],
            "finished_at": earlier["finished_at"],
            "code": {"commit": "abc1234", "uncommitted": []},
        }
    }
    assert "kept from an earlier run" in report.machine_block(
        results | {"machine": _MACHINE, "command": "c"}
    )
    other: dict[str, Any] = {"vendor": "postgresql"}
    _carry_over(other, path)
    assert other == {"vendor": "postgresql"}, "another database's results are not mixed in"


_MACHINE = {
    "date": "d",
    "cpus": 2,
    "memory_gib": 1,
    "os": "Linux",
    "database": "SQLite",
    "python": "3.13",
    "packages": {},
    "load_average_at_start": [0, 0, 0],
}


@pytest.mark.parametrize("vendor", ["postgresql", "sqlite"])
def test_the_documented_tables_are_those_of_the_results_file(vendor: str) -> None:
    results = json.loads((DOCS / report.results_name(vendor)).read_text())
    document = (DOCS / report.DOCUMENT).read_text()
    for name, body in report.blocks(results).items():
        assert f"<!-- bench:{name} -->\n{body}\n<!-- /bench:{name} -->" in document, name
    for plot in results["plots"]:
        assert (DOCS / plot).read_bytes().startswith(PNG_SIGNATURE)
        assert f"({plot})" in document, f"{plot} is shown"
    assert results["targets"] == targets.evaluate(results)


def _state() -> list[tuple[Any, ...]]:
    return list(
        Timesheet.objects.order_by("pk").values_list("pk", "imputed", "accrued_until", "status")
    )


@pytest.mark.django_db
def test_the_floor_moves_time_exactly_as_the_job_does(
    settings: Any, alice: User, bob: User, project: Project
) -> None:
    settings.TIMESHEETS_MAX_RUNNING_HOURS = 1
    timesheet_create(owner=alice, project=project, description="", now=at(0), start=True)
    timesheet_create(owner=bob, project=project, description="", now=at(3000.25), start=True)
    timesheet_accrue_running(now=at(600.5))
    now, limit = at(4200.125), timedelta(hours=1)  # alice's run reaches the limit, bob's not
    raw = connection.connection
    with transaction.atomic():
        if connection.vendor == "sqlite":
            moved = floor.execute_sqlite(raw, now=now, limit=limit)
        else:
            moved = floor.accrue_postgresql(raw, now=now, limit=limit)
        by_floor = _state()
        transaction.set_rollback(True)
    assert moved == timesheet_accrue_running(now=now) == 2
    assert by_floor == _state()
    assert [imputed for _, imputed, _, _ in by_floor] == [
        timedelta(hours=1),
        timedelta(seconds=1199.875),
    ]


@pytest.mark.django_db
def test_the_row_by_row_loop_adds_its_increment_to_each_row_it_saves(
    alice: User, bob: User, project: Project
) -> None:
    for owner in (alice, bob):
        timesheet_create(owner=owner, project=project, description="", now=at(0), start=True)
    cut_short = accrue_row_by_row(save_limit=1)
    assert (cut_short.saved, cut_short.running) == (1, 2)
    full = accrue_row_by_row()
    assert (full.saved, full.running) == (2, 2)
    imputed = sorted(imputed for _, imputed, _, _ in _state())
    assert imputed == [INCREMENT, 2 * INCREMENT]


@pytest.mark.slow
def test_the_stream_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    server = _server()
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.stream",
            "--database",
            server,
            "--subscribers",
            "2,5",
            "--trials",
            "2",
            "--gunicorn-threads",
            "2",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    name = re.search(r"database (\S+)", completed.stderr)
    assert name is not None, completed.stderr
    assert not _database_exists(server, name.group(1)), "the harness drops its database"
    results = json.loads((tmp_path / f"benchmarks-stream-{_vendor()}.json").read_text())
    assert [row["subscribers"] for row in results["levels"]] == [2, 5]
    for row in results["levels"]:
        assert row["trials"] == 2
        assert 0 < row["fanout_p50_ms"] <= row["fanout_p99_ms"] <= row["to_last_max_ms"]
    assert results["command"].startswith("uv run python -m bench.stream --database ")
    assert "| 5 | " in completed.stdout
    assert (tmp_path / f"benchmarks-stream-{_vendor()}.png").read_bytes().startswith(b"\x89PNG")
    # The sync stack holds one stream per thread, and then answers nothing else.
    assert results["gunicorn"] == {
        "threads": 2,
        "wait_seconds": 5.0,
        "attempted": 8,
        "held": 2,
        "healthz_answered": False,
    }


def test_the_instructions_section_stays_the_documents_last(tmp_path: Path) -> None:
    from bench import instructions

    document = tmp_path / "benchmarks.md"
    document.write_text("# Benchmarks\n\nEarlier sections.\n")

    instructions.write_section(document, f"{instructions.SECTION}\n\nfirst run\n")
    with document.open("a") as prose:
        prose.write("What the numbers mean.\n")
    instructions.write_section(document, f"{instructions.SECTION}\n\nsecond run\n")

    text = document.read_text()
    assert text.startswith("# Benchmarks\n\nEarlier sections.\n\n")
    assert text.count(instructions.SECTION) == 1
    assert "first run" not in text
    assert text.endswith(f"second run\n{instructions.END_MARK}\nWhat the numbers mean.\n")


def test_the_instructions_are_read_from_callgrinds_last_dump(tmp_path: Path) -> None:
    from bench import instructions

    for number, total in [(1, 500), (2, 1234), (10, 98765)]:
        (tmp_path / f"callgrind.asgi.42.{number}").write_text(
            f"version: 1\ncmd: python\nevents: Ir\nsummary: {total}\n"
        )

    assert instructions._dumped_instructions(tmp_path, "asgi", 42) == 98765


def test_the_instructions_section_gives_each_stacks_ratio_to_gunicorn() -> None:
    from bench import instructions

    stacks = [
        {"stack": "asgi", "requests": 100, "instructions_per_request": 900},
        {"stack": "wsgi", "requests": 100, "instructions_per_request": 1000},
        {"stack": "floor", "requests": 100, "instructions_per_request": 300},
    ]
    section = instructions._section(
        {
            "stacks": stacks,
            "finished_at": "2026-01-05T09:00:00+00:00",
            "vendor": "sqlite",
            "cycles": 25,
            "warmup": 10,
            "command": "uv run python -m bench.instructions",
            "machine": {"cpu_model": "cpu", "cpus": 2, "python": "3.13"},
            "valgrind": "valgrind-3",
        }
    )

    assert "| 900 | 0.90x |" in section
    assert "| 1,000 | 1.00x |" in section
    assert "| 300 | 0.30x |" in section
    assert "600 instructions per request above the floor (3.0x)" in section


def test_the_side_by_side_table_takes_the_median_of_the_rounds() -> None:
    def row(turn: int, stack: str, rps: float, requests: int, cpu: float) -> dict[str, Any]:
        return {
            "round": turn,
            "scenario": "idle",
            "stack": stack,
            "connections": 16,
            "rps": rps,
            "requests": requests,
            "server_cpu_seconds": cpu,
            "worker_cpu_seconds": None,
        }

    results = {
        "http": {
            "results": [
                row(1, "asgi", 100.0, 1000, 6.0),
                row(1, "wsgi", 90.0, 900, 7.0),
                row(2, "wsgi", 95.0, 950, 7.0),
                row(2, "asgi", 120.0, 1200, 6.0),
                row(3, "asgi", 110.0, 1100, 6.0),
                row(3, "wsgi", 80.0, 800, 7.0),
            ]
        }
    }

    medians = {m["stack"]: m for m in report.http_medians(results)}

    assert medians["asgi"]["rps"] == 110.0
    assert medians["wsgi"]["rps"] == 90.0
    assert medians["asgi"]["rounds"] == 3
    assert medians["asgi"]["cpu_ms_per_request"] == pytest.approx(1000 * 18.0 / 3300)
    assert "| idle | 16 | 3 | 110 | 90 | 1.22x |" in report.http_side_by_side(results)
