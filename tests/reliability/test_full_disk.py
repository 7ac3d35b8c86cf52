"""A full disk under an embedded database: ``/readyz`` says so, and says ready once it has room.

The database lives on a small tmpfs of the test's own (mounting one needs root, as CI runs;
elsewhere the test is reported as skipped, with the reason). ``serve`` answers ready, the disk
is filled to the last byte, ``/readyz`` answers 503 with a reason that names the disk, and ready
again once the filler is removed.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from tests.processes import ROOT, Service, free_port

pytestmark = pytest.mark.slow

SIZE = "24m"  # of the tmpfs: room for the migrated database and more than 8 MiB free
CHUNK = 1024 * 1024  # bytes written at a time while filling the disk


def readiness(base: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def small_disk() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="full-disk-") as directory:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", directory],
            capture_output=True,
            text=True,
            check=False,
        )
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
        try:
            yield Path(directory)
        finally:
            subprocess.run(["umount", "--lazy", directory], check=False)


def write_until_refused(filler: BinaryIO, size: int) -> int | None:
    """Write ``size`` zeros at a time until the disk refuses; the error number it gave."""
    try:
        while True:
            filler.write(b"\0" * size)
    except OSError as error:
        return error.errno


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the disk has no byte left."""
    with path.open("wb", buffering=0) as filler:
        # Whole chunks, then what is left byte by byte.
        assert write_until_refused(filler, CHUNK) == errno.ENOSPC
        assert write_until_refused(filler, 1) == errno.ENOSPC


def test_a_full_disk_makes_an_embedded_database_unready(small_disk: Path) -> None:
    url = f"sqlite:///{small_disk / 'db.sqlite3'}"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        check=True,
        timeout=120,
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = Service("serve", "--port", str(port), "--no-migrate", env={"DATABASE_URL": url})
    try:
        server.wait_for_http(f"{base}/healthz")
        ready, _ = readiness(base)
        fill(small_disk / "filler")
        full, said = readiness(base)
        (small_disk / "filler").unlink()
        again, _ = readiness(base)
    finally:
        server.stop()

    assert ready == 200
    assert full == 503
    # SQLite may fail to open the database at all ("disk I/O error"), refuse the write, or
    # answer both while the disk is under the free-space bound: each names the disk.
    assert said["failing"] in ("database", "writes", "disk"), said
    assert "disk" in str(said["detail"]), said
    assert again == 200
