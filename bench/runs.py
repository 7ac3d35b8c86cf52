"""Starting a measured run in a process of its own (``bench.child``) and reading its result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import rows

ROOT = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT = 3600.0  # seconds; a row-by-row loop over a million rows is slow, not stuck


class RunFailed(Exception):
    pass


def prepare() -> None:
    """Every measured run starts from the same rows in the same state."""
    rows.reset()
    rows.settle()


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    return run_children([spec])[0]


def run_children(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run one child per spec, all at once; their results in the same order."""
    with tempfile.TemporaryDirectory(prefix="bench_run_") as directory:
        started = []
        for index, spec in enumerate(specs):
            spec_path = Path(directory, f"spec-{index}.json")
            result_path = Path(directory, f"result-{index}.json")
            spec_path.write_text(json.dumps(spec))
            process = subprocess.Popen(  # noqa: S603  (our own interpreter and module)
                [sys.executable, "-m", "bench.child", str(spec_path), str(result_path)],
                cwd=ROOT,
                env=os.environ.copy(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            started.append((spec, process, result_path))
        results = []
        for spec, process, result_path in started:
            try:
                output, _ = process.communicate(timeout=CHILD_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                output, _ = process.communicate()
            if process.returncode != 0 or not result_path.exists():
                for _, other, _ in started:
                    if other.poll() is None:
                        other.kill()
                        other.wait()
                raise RunFailed(
                    f"the run {_brief(spec)} failed with exit code {process.returncode}:\n{output}"
                )
            result: dict[str, Any] = json.loads(result_path.read_text())
            results.append(result)
        return results


def _brief(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec without its long lists, for an error message."""
    return {key: value for key, value in spec.items() if not isinstance(value, list)}
