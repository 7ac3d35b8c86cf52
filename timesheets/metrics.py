"""What the timesheets add to the service's metrics."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from timesheets.models import Timesheet


class RunningTimesheets(Collector):
    """The number of running timesheets, read from the database at each scrape.

    A count in the database is the same whichever process answers, so it is not a per-process
    gauge that several processes would have to agree on.
    """

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "timesheets_running",
            "Timesheets running now.",
            value=Timesheet.objects.filter(status=Timesheet.Status.RUNNING).count(),
        )
