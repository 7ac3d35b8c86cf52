#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line
    from django.db import DatabaseError

    from config.env import SettingsError

    try:
        execute_from_command_line(sys.argv)
    except SettingsError as error:
        # A bad environment variable is a one-line fix; a traceback would hide it.
        sys.stderr.write(f"Configuration error: {error}\n")
        sys.exit(2)
    except DatabaseError as error:
        # So is a database that is not there, refuses us or was never migrated.
        from config.database_problems import explains, one_line

        if not explains(error):
            raise
        sys.stderr.write(f"{one_line(error)}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
