"""The webhook benchmark: its section of the document, and a smoke run at tiny sizes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from bench import webhooks

ROOT = Path(__file__).resolve().parent.parent


def results(*medians: float) -> dict[str, Any]:
    machine = {
        "cpus": 2,
        "cpu_model": "CPU",
        "memory_gib": 8,
        "os": "Linux",
        "python": "3.13",
        "database": "SQLite 3",
        "load_average_at_start": [1.0, 1.0, 1.0],
    }
    return {
        "command": "uv run python -m bench.webhooks",
        "finished_at": "2026-12-07T00:00:00+00:00",
        "runs": [
            {
                "machine": machine,
                "async": {"median_seconds": m, "best_seconds": m, "median_cpu_seconds": 1.0},
                "sync": {
                    "sample": 20,
                    "sample_seconds": 4.0,
                    "per_delivery_ms": 200.0,
                    "extrapolated_seconds": 200.0,
                },
            }
            for m in medians
        ],
        "deliveries": 1000,
        "subscriptions": 10,
        "events": 100,
        "receivers": 2,
        "delay_ms": 200.0,
        "concurrency": 100,
        "sample": 20,
        "repeat": 3,
    }


def test_the_section_judges_the_target_on_the_median() -> None:
    text = webhooks.section(results(2.5, 5.5))
    rows = [line for line in text.splitlines() if line.startswith("| SQLite")]
    assert [" met " in row for row in rows] == [True, False]
    assert (
        "| 2.50 s (2.50 s; CPU 1.00 s) | met | 20 in 4.00 s (200 ms each) | 200 s | 80x |"
        in (rows[0])
    )
    assert text.count("**Missed on") == 1


def test_the_plot_is_drawn_from_the_results(tmp_path: Path) -> None:
    webhooks.plot(results(2.5, 5.5), tmp_path / webhooks.PLOT)

    assert (tmp_path / webhooks.PLOT).read_bytes().startswith(b"\x89PNG")


def test_the_section_goes_at_the_end_and_is_replaced_in_place(tmp_path: Path) -> None:
    document = tmp_path / "benchmarks.md"
    document.write_text("# Benchmarks\n\nText.\n")
    webhooks.update_document(document, "first")
    assert document.read_text() == (
        "# Benchmarks\n\nText.\n\n<!-- bench:webhooks -->\nfirst\n<!-- /bench:webhooks -->\n"
    )
    document.write_text(document.read_text() + "\nAfter.\n")
    webhooks.update_document(document, "second")
    assert document.read_text() == (
        "# Benchmarks\n\nText.\n\n<!-- bench:webhooks -->\nsecond\n<!-- /bench:webhooks -->\n"
        "\nAfter.\n"
    )


def test_the_documented_section_is_the_benchmark_s() -> None:
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    assert text.count(webhooks.START) == text.count(webhooks.END) == 1
    section = text[text.index(webhooks.START) : text.index(webhooks.END)]
    assert "Command: `uv run python -m bench.webhooks" in section
    assert "Machine: " in section


@pytest.mark.slow
def test_a_smoke_run_measures_and_writes_the_section(tmp_path: Path) -> None:
    database = settings.DATABASES["default"]
    server = "sqlite"
    if database["ENGINE"] == "django.db.backends.postgresql":
        user, host = database.get("USER") or "postgres", database.get("HOST") or "127.0.0.1"
        server = f"postgres://{user}@{host}:{database.get('PORT') or 5432}"
    document = tmp_path / "benchmarks.md"
    document.write_text("# Benchmarks\n")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.webhooks",
            f"--database={server}",
            "--deliveries=20",
            "--delay=0.01",
            "--receivers=1",
            "--sample=2",
            "--repeat=1",
            f"--document={document}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    text = document.read_text()
    assert "20 deliveries (5 subscriptions x 4 events)" in text
    assert "| 2 in " in text
    assert f"]({webhooks.PLOT})" in text
    assert (tmp_path / webhooks.PLOT).read_bytes().startswith(b"\x89PNG")
