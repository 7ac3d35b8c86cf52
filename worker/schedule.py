"""Fixed-rate scheduling as pure functions of the time.

Run k of a job is due at ``first + k * interval``. A run that ends after later runs were due
skips them: they are counted, never bunched up to catch up.
"""

from __future__ import annotations

import math

# Clocks are floats: a run ending exactly on a boundary must not skip it by rounding.
_EPSILON = 1e-9  # in intervals


def due(*, first: float, interval: float, index: int) -> float:
    return first + index * interval


def next_index(*, first: float, interval: float, previous: int, not_before: float) -> int:
    """The index of the next run: after ``previous``, and due no earlier than ``not_before``."""
    earliest = math.ceil((not_before - first) / interval - _EPSILON)
    return max(previous + 1, earliest)


def backoff(*, interval: float, failures: int, cap: float) -> float:
    """How long to wait after ``failures`` consecutive failures before trying again.

    Doubles with each failure, from one interval, and never exceeds ``cap`` or one interval,
    whichever is longer.
    """
    if failures <= 0:
        return 0.0
    return min(interval * 2.0 ** (failures - 1), max(cap, interval))
