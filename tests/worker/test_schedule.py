from __future__ import annotations

import pytest

from worker.schedule import backoff, due, next_index


def test_run_k_is_due_at_first_start_plus_k_intervals() -> None:
    assert [due(first=100.0, interval=5.0, index=k) for k in range(4)] == [100, 105, 110, 115]


@pytest.mark.parametrize(
    ("previous", "not_before", "expected"),
    [
        (0, 101.0, 1),  # the run took 1 s: the next one is the next slot
        (0, 105.0, 1),  # ended exactly on the boundary: that slot is not skipped
        (0, 105.000001, 2),  # ended after the next slot was due: it is skipped
        (0, 117.0, 4),  # long run: slots 1, 2 and 3 are skipped, none bunched
        (3, 100.0, 4),  # never goes back
    ],
)
def test_next_index(previous: int, not_before: float, expected: int) -> None:
    assert next_index(first=100.0, interval=5.0, previous=previous, not_before=not_before) == (
        expected
    )


def test_float_rounding_never_skips_a_boundary() -> None:
    interval = 0.1
    for k in range(1, 1000):
        ended = 0.0 + k * interval  # accumulates binary rounding error
        assert next_index(first=0.0, interval=interval, previous=k - 1, not_before=ended) == k


def test_backoff_doubles_up_to_the_cap_or_one_interval() -> None:
    assert [backoff(interval=0.2, failures=n, cap=1.0) for n in range(6)] == [
        0.0,
        0.2,
        0.4,
        0.8,
        1.0,
        1.0,
    ]
    # With an interval longer than the cap, a failing job is retried every interval.
    assert [backoff(interval=5.0, failures=n, cap=1.0) for n in (1, 2, 9)] == [5.0, 5.0, 5.0]
