"""Commands run by the check: each one bounded in time, its output kept for the report."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

STARTED = time.monotonic()
OUTPUT_TAIL = 40  # lines of a failed command's output shown in the report


class CheckFailed(Exception):
    """Something the check expects did not hold; the message says what, in a line or a few."""


def say(message: str) -> None:
    sys.stdout.write(f"[containers {time.monotonic() - STARTED:6.1f}s] {message}\n")
    sys.stdout.flush()


def tail(text: str, lines: int = OUTPUT_TAIL) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run(
    arguments: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end; with ``check``, a non-zero exit fails the check."""
    try:
        completed = subprocess.run(  # noqa: S603  (the check's own fixed commands)
            list(arguments),
            env={**os.environ, **(env or {})},
            # Nothing waits for a terminal: CI has none.
            **({"input": input} if input is not None else {"stdin": subprocess.DEVNULL}),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CheckFailed(
            f"`{shlex.join(arguments)}` did not finish within {timeout:g} s"
        ) from None
    if check and completed.returncode != 0:
        raise CheckFailed(
            f"`{shlex.join(arguments)}` exited with {completed.returncode}:\n"
            + tail(completed.stdout + completed.stderr)
        )
    return completed


def succeeds(arguments: Sequence[str], *, timeout: float = 30) -> bool:
    try:
        return run(arguments, timeout=timeout, check=False).returncode == 0
    except (CheckFailed, OSError):
        return False
