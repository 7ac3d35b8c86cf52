"""A throwaway PostgreSQL cluster that a test owns, so that it can stop, crash and restart it.

``initdb`` in a temporary directory, its own port on 127.0.0.1, its Unix socket in the same
directory, trust authentication. PostgreSQL refuses to run as root, so when the tests do, the
cluster runs as the ``postgres`` account (through ``runuser``), which then owns the directory.
The server binaries are found through ``PG_BINDIR``, ``pg_config --bindir``, or the newest
``/usr/lib/postgresql/<version>/bin``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from tests.processes import free_port

SERVER_ACCOUNT = "postgres"  # the account the server runs as when the tests run as root
START_TIMEOUT = 60  # seconds pg_ctl waits for the server to accept connections

type StopMode = Literal["smart", "fast", "immediate"]


def find_bindir() -> Path:
    configured = os.environ.get("PG_BINDIR")
    candidates = [Path(configured)] if configured else []
    if shutil.which("pg_config"):
        output = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if output:
            candidates.append(Path(output))
    candidates += sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
        reverse=True,
    )
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    raise RuntimeError(
        "No PostgreSQL server binaries (initdb, pg_ctl) found: set PG_BINDIR to their folder."
    )


class PostgresCluster:
    """One cluster: ``start()``, ``stop()``, ``crash()``, ``start()`` again, ``destroy()``."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        account = pwd.getpwnam(SERVER_ACCOUNT) if os.geteuid() == 0 else None
        self._as_account = ["runuser", "-u", SERVER_ACCOUNT, "--"] if account else []
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="pgcluster-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        if account is not None:
            os.chown(self.directory, account.pw_uid, account.pw_gid)

    def initialise(self) -> None:
        self._run(
            "initdb",
            "--pgdata",
            str(self.data),
            "--username",
            "postgres",
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-sync",  # a throwaway cluster need not survive a power cut
        )

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = " ".join(
            [
                f"-c port={self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.directory}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
            ]
        )
        self._run(
            "pg_ctl",
            "start",
            "--pgdata",
            str(self.data),
            "--log",
            str(self.log),
            "--wait",
            "--timeout",
            str(START_TIMEOUT),
            "-o",
            options,
        )

    def stop(self, mode: StopMode = "fast") -> None:
        """``fast`` disconnects clients and shuts down cleanly; ``immediate`` is a crash."""
        self._run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", mode, "--wait")

    def crash(self) -> None:
        self.stop("immediate")

    @property
    def running(self) -> bool:
        status = subprocess.run(
            [*self._as_account, str(self.bindir / "pg_ctl"), "status", "--pgdata", str(self.data)],
            capture_output=True,
            check=False,
        )
        return status.returncode == 0

    def create_database(self, name: str) -> None:
        address = ["--host", "127.0.0.1", "--port", str(self.port), "--username", "postgres"]
        self._run("createdb", *address, name)

    def destroy(self) -> None:
        """Stop the server whatever its state, and remove every file of the cluster."""
        if self.data.exists() and self.running:
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self, program: str, *arguments: str) -> None:
        result = subprocess.run(
            [*self._as_account, str(self.bindir / program), *arguments],
            capture_output=True,
            text=True,
            check=False,
            # A Ctrl-C meant for the tests must not reach the server too: the fixture stops it.
            start_new_session=True,
            timeout=START_TIMEOUT + 30,
        )
        if result.returncode != 0:
            server_log = self.log.read_text() if self.log.exists() else ""
            raise subprocess.CalledProcessError(
                result.returncode,
                result.args,
                output=result.stdout,
                stderr=f"{result.stderr}\n--- server log ---\n{server_log[-4000:]}",
            )


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A started cluster, destroyed afterwards even when the code in between fails."""
    cluster = PostgresCluster()
    try:
        cluster.initialise()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
