"""Every option of every management command explains itself in ``--help``, and so does every
argument of the project's own commands (Django leaves a few of its positional ones bare)."""

from __future__ import annotations

import argparse

import pytest
from django.core.management import get_commands, load_command_class

PROJECT_APPS = frozenset({"timesheets", "worker"})
# Options that argparse and Django give every command, explained by them.
COMMON = {"help", "version", "verbosity", "settings", "pythonpath", "traceback", "no_color"}
COMMON |= {"force_color", "skip_checks"}


def options(name: str) -> list[argparse.Action]:
    command = load_command_class(get_commands()[name], name)
    parser = command.create_parser("manage.py", name)
    return [action for action in parser._actions if action.dest not in COMMON]


@pytest.mark.parametrize("name", sorted(get_commands()))
def test_every_option_has_help(name: str) -> None:
    ours = get_commands()[name] in PROJECT_APPS
    unexplained = [
        "/".join(action.option_strings) or action.dest
        for action in options(name)
        if (action.option_strings or ours) and (not action.help or action.help == argparse.SUPPRESS)
    ]

    assert unexplained == [], f"manage.py {name}: options without help"


def test_the_project_s_commands_are_among_them() -> None:
    assert {"serve", "create_api_token", "wait_for_database", "runworker"} <= {
        name for name, app in get_commands().items() if app in PROJECT_APPS
    }
