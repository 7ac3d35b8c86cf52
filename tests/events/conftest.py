"""What the event stream's and the broker's tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from events import broker


@pytest.fixture
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    # Inside a test's transaction nothing commits, so nothing notifies: the broker must look.
    monkeypatch.setattr(broker, "POLL_INTERVAL", 0.02)
    monkeypatch.setattr(broker, "NOTIFIED_POLL_INTERVAL", 0.02)


@pytest.fixture(autouse=True)
def _no_broker_outlives_its_test() -> Iterator[None]:
    yield
    assert broker._broker is None, "the test closes the broker it used"
