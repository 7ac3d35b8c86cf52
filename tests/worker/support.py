"""Virtual time for the runner, and reading the structured events it logs."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from config.logging import make_formatter

EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class VirtualTime:
    """A monotonic clock and a ``sleep`` that advance only when the test drives them.

    ``run_until`` waits (in real time) until the expected number of coroutines all sleep,
    then wakes them in deadline order: every timing in a test is exact and repeatable.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    def wall_clock(self) -> datetime:
        return EPOCH + timedelta(seconds=self.now)

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        entry = (self.now + max(0.0, seconds), next(self._order), future)
        heapq.heappush(self._sleepers, entry)
        try:
            await future
        finally:
            with suppress(ValueError):
                self._sleepers.remove(entry)
                heapq.heapify(self._sleepers)

    def asleep(self) -> int:
        return sum(not future.done() for _, _, future in self._sleepers)

    async def run_until(self, deadline: float, *, actors: int, timeout: float = 20.0) -> None:
        while True:
            await self.settle(actors, timeout=timeout)
            if not self._pending() or self._pending()[0][0] > deadline:
                self.now = max(self.now, deadline)
                return
            self._wake_next()

    async def settle(self, actors: int, *, timeout: float = 20.0) -> None:
        """Wait until ``actors`` coroutines sleep: nothing can happen until time moves."""
        give_up = time.monotonic() + timeout
        while self.asleep() < actors:
            if time.monotonic() > give_up:
                raise AssertionError(f"only {self.asleep()} of {actors} coroutines went to sleep")
            await asyncio.sleep(0.001)

    async def finish(
        self, task: asyncio.Task[Any], *, actors: int = 0, timeout: float = 20.0
    ) -> None:
        """Drive time until ``task`` is done (the runner's shutdown may sleep).

        ``actors`` is how many coroutines sleep at each step of the shutdown: the runs still in
        progress when it began, then the final runs that take time. Time moves only once exactly
        that many sleep, so the loops the shutdown cancels have let go of their sleeps first,
        and what a woken run does next happens at the time it woke.
        """
        give_up = time.monotonic() + timeout
        while not task.done():
            if time.monotonic() > give_up:
                raise AssertionError(
                    f"the task did not finish; {self.asleep()} coroutines sleep, {actors} expected"
                )
            if self.asleep() == actors and actors:
                self._wake_next()
            await asyncio.sleep(0.001)
        await task

    def _pending(self) -> list[tuple[float, int, asyncio.Future[None]]]:
        # A sleep cancelled by the runner's shutdown leaves the heap once its coroutine has
        # handled the cancellation; until then it is skipped, never woken.
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers

    def _wake_next(self) -> None:
        when, _, future = heapq.heappop(self._pending())
        self.now = max(self.now, when)
        future.set_result(None)


def events(caplog: pytest.LogCaptureFixture, name: str | None = None) -> list[dict[str, Any]]:
    """The structlog events captured so far, optionally only those called ``name``."""
    found = []
    for record in caplog.records:
        if isinstance(record.msg, dict) and (name is None or record.msg.get("event") == name):
            found.append(record.msg)
    return found


def rendered(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    """The events called ``name`` as the JSON log lines the service writes."""
    formatter = make_formatter("json")
    return [
        formatter.format(record)
        for record in caplog.records
        if isinstance(record.msg, dict) and record.msg.get("event") == name
    ]
