"""Stop on SIGTERM or SIGINT: the first asks for a graceful stop, a second exits at once.

The previous handlers are restored afterwards, as uvicorn's server does, so that the code
around (a test, an embedding program) keeps the handlers it had.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog

logger = structlog.get_logger("worker")

HANDLED = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(loop: asyncio.AbstractEventLoop, *, stop: Callable[[], None]) -> Iterator[None]:
    previous = {number: signal.getsignal(number) for number in HANDLED}
    received: list[int] = []

    def handle(number: int) -> None:
        received.append(number)
        name = signal.Signals(number).name
        if len(received) == 1:
            logger.info("stop_requested", signal=name, pid=os.getpid())
            stop()
        else:
            logger.warning("exit_forced", signal=name, pid=os.getpid())
            os._exit(128 + number)

    for number in HANDLED:
        loop.add_signal_handler(number, handle, number)
    try:
        yield
    finally:
        for number in HANDLED:
            loop.remove_signal_handler(number)
            signal.signal(number, previous[number])
