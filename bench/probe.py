"""How late the event loop wakes a task that sleeps a fixed interval: its lag.

A task that asks to sleep 10 ms and wakes 13 ms later saw 3 ms of lag: for those 3 ms the
loop was busy with something else (or could not get the GIL back from another thread), and
every request on that loop waited as long.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

PROBE_INTERVAL = 0.010  # seconds the probe asks to sleep


@dataclass(frozen=True)
class Sample:
    slept_at: float  # perf_counter when the probe went to sleep
    woke_at: float
    lag: float  # seconds later than asked


@dataclass
class LagProbe:
    interval: float = PROBE_INTERVAL
    samples: list[Sample] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bench-lag-probe")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            slept_at = time.perf_counter()
            await asyncio.sleep(self.interval)
            woke_at = time.perf_counter()
            self.samples.append(
                Sample(
                    slept_at=slept_at,
                    woke_at=woke_at,
                    lag=max(0.0, woke_at - slept_at - self.interval),
                )
            )

    def during(self, start: float, end: float) -> list[Sample]:
        """The samples whose sleep overlapped ``[start, end]``: at least the one in progress."""
        return [s for s in self.samples if s.woke_at >= start and s.slept_at <= end]
