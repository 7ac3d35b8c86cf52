"""The pattern the accrual job replaces, kept here only to be measured against it.

A periodic function fetches every running timesheet, adds a fixed interval to it in Python and
saves it back: one query for all rows, one Python object per row, one UPDATE (and one commit)
per row, and a fixed increment that drifts whenever a tick is late. The project itself never
does this (``timesheets.services`` moves time in one set-based UPDATE); this is the baseline.

The per-row log line and the blanket ``except`` of the original are left out: they would only
make it slower.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from timesheets.models import Timesheet

INCREMENT = timedelta(seconds=5)  # the fixed interval added per tick: one tick of its loop


@dataclass(frozen=True)
class RowByRowRun:
    saved: int  # rows saved
    running: int  # rows the loop fetched
    fetch_seconds: float  # counting and fetching every running row
    save_seconds: float  # the save() loop over the rows saved


def accrue_row_by_row(*, save_limit: int | None = None) -> RowByRowRun:
    """Fetch each running timesheet, add ``INCREMENT``, ``save()`` it.

    With ``save_limit``, every running row is still fetched (so memory is what the whole loop
    needs) but only the first ``save_limit`` are saved, for a loop too long to run in full.
    """
    started = time.perf_counter()
    fetched = started
    saved = 0
    running = Timesheet.objects.filter(status=Timesheet.Status.RUNNING)
    count = running.count()
    if count:
        for timesheet in running:
            if saved == 0:
                # Iterating a queryset fetches all its rows before yielding the first.
                fetched = time.perf_counter()
            if save_limit is not None and saved >= save_limit:
                break
            timesheet.imputed = timesheet.imputed + INCREMENT
            timesheet.save()
            saved += 1
    finished = time.perf_counter()
    return RowByRowRun(
        saved=saved,
        running=count,
        fetch_seconds=fetched - started,
        save_seconds=finished - fetched,
    )
