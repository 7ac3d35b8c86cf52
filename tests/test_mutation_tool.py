"""The mutation tool's mutants: what it changes, and what it leaves alone."""

from __future__ import annotations

import ast

from tools.mutation.mutants import mutants, original

SOURCE = '''
"""A module docstring, left alone."""

import logging

logger = logging.getLogger(__name__)
LIMIT = 3  # seconds


def clamp(value: int | None, *, wait: float = 0.5) -> int:
    """A docstring, left alone."""
    logger.info("clamping", value=value + 1)
    if value is None or not value:
        return max(0, LIMIT - 1)
    record(value)
    total = 0
    total += value
    return min(value, LIMIT) if value < LIMIT else True


def record(value: int) -> None:
    pass
'''


def test_each_kind_of_change_is_made_once_where_it_applies() -> None:
    found = [(m.line, m.description) for m in mutants("sample.py", SOURCE)]

    assert sorted(found) == sorted(
        [
            (7, "`3` to `4`"),
            (10, "`0.5` to `1.5`"),
            (13, "condition negated"),
            (13, "`is` to `is not`"),
            (13, "`or` to `and`"),
            (13, "`not` removed"),
            (14, "`max` to `min`"),
            (14, "`0` to `1`"),
            (14, "`-` to `+`"),
            (14, "`1` to `2`"),
            (10, "line 15 removed"),
            (16, "`0` to `1`"),
            (17, "`+` to `-`"),
            (10, "line 17 removed"),
            (18, "condition negated"),
            (18, "`min` to `max`"),
            (18, "`<` to `<=`"),
            (18, "`True` to `False`"),
        ]
    )


def test_every_mutant_is_valid_python_that_differs_from_the_original() -> None:
    written = original(SOURCE)
    found = mutants("sample.py", SOURCE)

    assert [m.name for m in found] == [f"sample.py#{n}" for n in range(1, len(found) + 1)]
    for mutant in found:
        ast.parse(mutant.source)
        assert mutant.source != written, mutant.description
    assert len({m.source for m in found}) == len(found), "no two mutants are the same"
