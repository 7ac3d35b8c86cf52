"""The benchmark's own database: created at the start, dropped at the end.

On PostgreSQL a database named ``bench_run_<pid>`` is created on the server the caller names
(the database part of its URL is ignored); on SQLite a file in a new temporary directory. The
caller's own database is never opened.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, LiteralString
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

type Vendor = Literal["sqlite", "postgresql"]

MAINTENANCE_DATABASE = "postgres"  # where CREATE DATABASE and DROP DATABASE are sent from


class BenchDatabaseError(Exception):
    """The benchmark cannot get a database of its own."""


def vendor_of(server: str) -> Vendor:
    """``sqlite`` or ``sqlite:///...`` means SQLite; ``postgres://...`` means PostgreSQL."""
    scheme = server.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return "sqlite"
    if scheme in {"postgres", "postgresql"}:
        return "postgresql"
    raise BenchDatabaseError(f"{server!r} is neither 'sqlite' nor a postgres://user@host:port URL")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@dataclass
class BenchDatabase:
    vendor: Vendor
    url: str  # the DATABASE_URL of the benchmark's database
    name: str
    admin_url: str | None = None  # PostgreSQL: the maintenance database on the same server
    directory: Path | None = None  # SQLite: the temporary directory holding the file

    @classmethod
    def create(cls, server: str) -> BenchDatabase:
        vendor = vendor_of(server)
        if vendor == "sqlite":
            directory = Path(tempfile.mkdtemp(prefix="bench_"))
            path = directory / "bench.sqlite3"
            return cls(
                vendor="sqlite",
                url=f"sqlite:///{path}",
                name=str(path),
                directory=directory,
            )
        name = f"bench_run_{os.getpid()}"
        admin_url = _with_database(server, MAINTENANCE_DATABASE)
        database = cls(
            vendor="postgresql",
            url=_with_database(server, name),
            name=name,
            admin_url=admin_url,
        )
        try:
            # Left over only by a run of this same process id that was killed: ours to drop.
            database._execute_admin("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            database._execute_admin("CREATE DATABASE {}")
        except psycopg.Error as error:
            raise BenchDatabaseError(
                f"cannot create the database {name!r} on the server: {error}"
            ) from None
        return database

    def drop(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
        if self.admin_url is not None:
            self._execute_admin("DROP DATABASE IF EXISTS {} WITH (FORCE)")

    def _execute_admin(self, statement: LiteralString) -> None:
        assert self.admin_url is not None
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(sql.SQL(statement).format(sql.Identifier(self.name)))
