"""A database configuration or connection problem, told in one line with what to do.

Management commands, ``serve`` among them, and the wait before a container starts report a
database they cannot use this way instead of with a traceback: where the database is (without
its password), what its driver said, and the fix.
"""

from __future__ import annotations

from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connections

MIGRATE = "Run `python manage.py migrate` first."

# What the drivers say, and what to do about it; the first that matches is given.
_FIXES = (
    ("no such table", MIGRATE),
    ('role "', "Check the user in DATABASE_URL."),
    ("does not exist", None),  # a relation or a database: decided below
    ("password authentication failed", "Check the user and password in DATABASE_URL."),
    ("could not translate host name", "Check the host name in DATABASE_URL."),
    ("name or service not known", "Check the host name in DATABASE_URL."),
    (
        "unable to open database file",
        "Check that the folder in DATABASE_URL exists and is writable by this user.",
    ),
    ("readonly database", "Make the database file and its folder writable by this user."),
    ("disk is full", "Free some space on the disk that holds the database."),
)
_UNREACHABLE = "Check DATABASE_URL and that the database is running."


def describe(settings_dict: dict[str, Any]) -> str:
    """Where the database is, as ``host:port/name``, without credentials."""
    if settings_dict["ENGINE"] == "django.db.backends.postgresql":
        host = settings_dict.get("HOST") or "localhost"
        port = settings_dict.get("PORT") or 5432
        return f"{host}:{port}/{settings_dict['NAME']}"
    return str(settings_dict["NAME"])


def reason(error: BaseException, password: str) -> str:
    """What the driver said, on one line, ending in a full stop, with no password in it."""
    # Drivers spread their message over several lines; the failure is reported on one.
    said = " ".join(str(error).split()).rstrip(".") or type(error).__name__
    if password:
        said = said.replace(password, "***")
    return said if said.endswith(("?", "!")) else f"{said}."


def fix(error: BaseException) -> str:
    said = str(error).lower()
    for words, remedy in _FIXES:
        if words in said:
            if remedy is not None:
                return remedy
            if "database" in said and "relation" not in said:
                return "Create the database (createdb), or check its name in DATABASE_URL."
            return MIGRATE
    return _UNREACHABLE


def is_unmigrated(error: BaseException) -> bool:
    """Whether the error is a table that is not there: migrations were not applied."""
    return fix(error) == MIGRATE


def explains(error: DatabaseError) -> bool:
    """Whether the error is about reaching or setting up the database, not a bug of a query."""
    return isinstance(error, OperationalError | InterfaceError) or is_unmigrated(error)


def one_line(error: DatabaseError) -> str:
    """The problem with the default database, for a person at a terminal or reading a log."""
    settings_dict = connections[DEFAULT_DB_ALIAS].settings_dict
    said = reason(error, settings_dict.get("PASSWORD") or "")
    return f"Database at {describe(settings_dict)} is not usable: {said} {fix(error)}"
