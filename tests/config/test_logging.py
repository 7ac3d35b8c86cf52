"""Console tracebacks: local variables only while debugging."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from config.logging import make_formatter
from tests.processes import ROOT

SECRET = "local-secret-4f1e"

RAISE_AND_LOG = f"""
import logging
def connect():
    password = {SECRET!r}
    raise ConnectionError("refused")
try:
    connect()
except ConnectionError:
    logging.getLogger("django.request").exception("request_failed")
"""


def record_of_a_failure() -> logging.LogRecord:
    def connect() -> None:
        password = SECRET
        raise ConnectionError(f"refused ({len(password)})")

    try:
        connect()
    except ConnectionError:
        return logging.LogRecord(
            "django.request", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )
    raise AssertionError("connect() raised nothing")


@pytest.mark.parametrize("show_locals", [False, True])
def test_locals_are_shown_only_when_asked(show_locals: bool) -> None:
    rendered = make_formatter("console", show_locals=show_locals).format(record_of_a_failure())

    assert "ConnectionError: refused (17)" in rendered
    assert (SECRET in rendered) is show_locals


def test_with_debug_off_the_console_gets_no_locals() -> None:
    environment = {**os.environ, "DEBUG": "false", "SECRET_KEY": "k" * 50, "LOG_FORMAT": "console"}
    for debug, shown in (("false", False), ("true", True)):
        completed = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", RAISE_AND_LOG],
            cwd=ROOT,
            env={**environment, "DEBUG": debug},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "ConnectionError: refused" in completed.stderr, completed.stderr
        assert (SECRET in completed.stderr) is shown, debug
