"""What the timesheets add to the service's metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from django.db import DatabaseError
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from timesheets.models import Timesheet

MAX_AGE = 15.0  # seconds a count of running timesheets is served before it is read again


class RunningTimesheets(Collector):
    """The number of running timesheets, read from the database at most once per ``max_age``.

    A scrape costs no query while the last count is fresh, however often and however many
    scrapers ask. While the database is unreachable the gauge is left out (the process's own
    metrics, its runner's failures among them, are served without it), and the next attempt
    waits ``max_age`` too.
    """

    def __init__(
        self, *, max_age: float = MAX_AGE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()  # one query at a time, for every waiting scrape
        self._count: int | None = None
        self._read_at: float | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        count = self._current()
        if count is not None:
            yield GaugeMetricFamily("timesheets_running", "Timesheets running now.", value=count)

    def _current(self) -> int | None:
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self.max_age:
                self._read_at = now
                try:
                    self._count = Timesheet.objects.filter(status=Timesheet.Status.RUNNING).count()
                except DatabaseError:
                    self._count = None
            return self._count
