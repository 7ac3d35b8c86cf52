"""The server process's garbage collector: young collections spaced, startup frozen."""

from __future__ import annotations

import gc

from config import collector


async def test_tune_spaces_young_collections_and_freezes_what_is_loaded() -> None:
    assert gc.get_threshold()[0] < collector.YOUNG_THRESHOLD, "Python's default to begin with"

    await collector.tune()

    assert gc.get_threshold() == (
        collector.YOUNG_THRESHOLD,
        collector.MIDDLE_THRESHOLD,
        collector.OLD_THRESHOLD,
    )
    assert gc.get_freeze_count() > 10_000, "Django and the project, loaded before"
