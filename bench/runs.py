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
    with tempfile.TemporaryDirectory(prefix="bench_run_") as directory:
        spec_path, result_path = Path(directory, "spec.json"), Path(directory, "result.json")
        spec_path.write_text(json.dumps(spec))
        completed = subprocess.run(  # noqa: S603  (our own interpreter and module)
            [sys.executable, "-m", "bench.child", str(spec_path), str(result_path)],
            cwd=ROOT,
            env=os.environ.copy(),
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
        if completed.returncode != 0 or not result_path.exists():
            raise RunFailed(
                f"the run {spec} failed with exit code {completed.returncode}:\n"
                f"{completed.stdout}{completed.stderr}"
            )
        result: dict[str, Any] = json.loads(result_path.read_text())
        return result
