from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.webhooks.receiver import Receiver, receiving


@pytest.fixture(autouse=True)
def _loopback_allowed(settings: Any) -> None:
    """The receivers run on 127.0.0.1, which production refuses by default."""
    settings.WEBHOOKS_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.WEBHOOKS_TIMEOUT_SECONDS = 5
    settings.WEBHOOKS_CONCURRENCY = 10
    settings.WEBHOOKS_BATCH_SIZE = 1000
    settings.WEBHOOKS_RETRY_HOURS = 24
    settings.WEBHOOKS_DISABLE_AFTER_FAILURES = 100


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as running:
        yield running
