"""What the project's management commands share."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand


class ServiceCommand(BaseCommand):
    """A command that starts a service, which must start while the database is unreachable
    and report it as it goes (serving 503s, retrying its jobs).

    Django runs the system checks against every database before a command, and the check of
    JSON fields asks SQLite whether it supports them, which opens the database. These commands
    run the checks that need no database.
    """

    requires_system_checks: Any = ()

    def execute(self, *args: Any, **options: Any) -> Any:
        if not options.get("skip_checks"):
            self.check(databases=[])
        return super().execute(*args, **options)
