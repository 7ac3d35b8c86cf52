"""Declaring periodic jobs, and finding them in every installed app's ``jobs`` module.

A job is a function that takes the current time and returns how many rows it affected (or
None). It may be a plain function, run in the runner's own thread, or a coroutine function,
run on the event loop with Django's native async ORM::

    @job(interval=5.0)
    def accrue(now: datetime) -> int: ...

Intervals and the ``enabled`` switch may be callables, so that they follow settings read when
the runner is built rather than when the module is imported.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from django.utils.module_loading import autodiscover_modules

from worker.exceptions import JobConfigurationError

type JobResult = int | None
type JobFunction = Callable[[datetime], JobResult] | Callable[[datetime], Awaitable[JobResult]]
type Seconds = float | Callable[[], float]


@dataclass(frozen=True)
class Job:
    name: str
    function: JobFunction
    interval: float  # seconds between the starts of two runs
    run_at_shutdown: bool = False  # run once more when the runner stops

    @property
    def is_async(self) -> bool:
        function = self.function
        # A callable object counts by its __call__, as Django's own views do.
        return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
            type(function).__call__
        )


@dataclass(frozen=True)
class Declaration:
    name: str
    function: JobFunction
    interval: Seconds
    run_at_shutdown: bool
    enabled: Callable[[], bool]

    def resolve(self) -> Job:
        interval = self.interval() if callable(self.interval) else self.interval
        if not interval > 0:
            raise JobConfigurationError(
                f"Job {self.name!r} has interval {interval!r}; it must be a number of seconds "
                "greater than 0."
            )
        return Job(
            name=self.name,
            function=self.function,
            interval=float(interval),
            run_at_shutdown=self.run_at_shutdown,
        )


_declarations: list[Declaration] = []


def job(
    *,
    interval: Seconds,
    name: str | None = None,
    run_at_shutdown: bool = False,
    enabled: Callable[[], bool] = lambda: True,
) -> Callable[[JobFunction], JobFunction]:
    """Declare a periodic job. Several declarations may share a name if at most one is
    enabled, which is how one job offers alternative implementations."""

    def declare(function: JobFunction) -> JobFunction:
        _declarations.append(
            Declaration(
                name=name or function.__name__,
                function=function,
                interval=interval,
                run_at_shutdown=run_at_shutdown,
                enabled=enabled,
            )
        )
        return function

    return declare


def discover() -> list[Job]:
    """Import every installed app's ``jobs`` module and return the enabled jobs."""
    autodiscover_modules("jobs")
    jobs: dict[str, Job] = {}
    for declaration in _declarations:
        if not declaration.enabled():
            continue
        if declaration.name in jobs:
            raise JobConfigurationError(
                f"Two enabled jobs are named {declaration.name!r}; rename one or make their "
                "`enabled` conditions exclusive."
            )
        jobs[declaration.name] = declaration.resolve()
    return list(jobs.values())
