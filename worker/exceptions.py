"""Every error the worker raises on purpose."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from timesheets.exceptions import DatabaseBusy


class WorkerError(Exception):
    """The periodic-job runner cannot do what was asked."""


class JobConfigurationError(WorkerError):
    """A job is declared in a way the runner cannot schedule."""


class JobDeferred(WorkerError):
    """A run could not do its work now, through no fault of its own; the next run does it.

    The runner reports it as a warning, not as a failure: nothing is lost and nobody need act,
    unless it goes on (then the usual "still failing" summary says so).
    """


@contextmanager
def deferred_while_busy() -> Iterator[None]:
    """Other writers kept the database past the job's bound: the next run does the work, so the
    run is deferred, not failed."""
    try:
        yield
    except DatabaseBusy as busy:
        raise JobDeferred(str(busy)) from busy
