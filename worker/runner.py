"""The periodic-job runner.

Each job runs in a loop of its own: wait until the next run is due, run, work out the next due
time. Runs are isolated (an exception is logged with its traceback and the loop goes on), the
loops are supervised (one that ends unexpectedly is restarted), and stopping is an explicit
phase: runs in progress finish within a bound, then the jobs marked ``run_at_shutdown`` run once
more.

All database work happens in the runner's own single-thread executor: sync jobs are called
through ``sync_to_async``, and async jobs' native ORM calls land there too, because the runner
runs inside ``ThreadSensitiveContext(executor=...)``. Connections are closed around every run, as
Django's request cycle does, so a connection the database dropped is never reused.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import structlog
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import close_old_connections
from django.utils import timezone

from worker import metrics, schedule
from worker.exceptions import JobDeferred, WorkerError
from worker.registry import Job, JobResult

logger = structlog.get_logger("worker")

STOP_TIMEOUT = 10.0  # seconds a run in progress may take to finish once stopping starts
BACKOFF_CAP = 1.0  # seconds; consecutive failures wait at most this, or one interval
FAILURE_SUMMARY_INTERVAL = 10.0  # seconds between two summaries of one failure streak
LAG_PROBE_INTERVAL = 1.0  # seconds between two measurements of the event loop's lag
RESTART_DELAY = 1.0  # seconds before a job loop that crashed is started again

type Clock = Callable[[], float]
type Sleep = Callable[[float], Awaitable[None]]
type WallClock = Callable[[], datetime]


def _milliseconds(seconds: float) -> float:
    return round(seconds * 1000, 3)


@dataclass
class JobState:
    """What the runner knows about one job; read by the status snapshot."""

    job: Job
    runs: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    skipped: int = 0
    last_started_at: datetime | None = None
    last_finished_at: datetime | None = None
    last_duration_ms: float | None = None
    last_lag_ms: float | None = None
    last_rows: int | None = None
    last_error: str | None = None
    in_run: bool = False
    failing_since: float | None = None  # clock reading at the streak's first failure
    last_summary: float | None = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.job.name,
            "interval_s": self.job.interval,
            "runs": self.runs,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "skipped": self.skipped,
            "last_started_at": self.last_started_at,
            "last_finished_at": self.last_finished_at,
            "last_duration_ms": self.last_duration_ms,
            "last_lag_ms": self.last_lag_ms,
            "last_rows": self.last_rows,
            "last_error": self.last_error,
            "in_run": self.in_run,
        }


def _call_sync(job: Job, now: datetime) -> JobResult:
    close_old_connections()
    try:
        return cast(Callable[[datetime], JobResult], job.function)(now)
    finally:
        close_old_connections()


# The runner whose job is running: a job that reports on its runner (the heartbeat) reads it.
current_runner: contextvars.ContextVar[Runner] = contextvars.ContextVar("current_runner")


class Runner:
    """Runs jobs until asked to stop. Build one per process; ``run()`` may be called once."""

    def __init__(
        self,
        *,
        jobs: Iterable[Job],
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        wall_clock: WallClock = timezone.now,
        stop_timeout: float = STOP_TIMEOUT,
        backoff_cap: float = BACKOFF_CAP,
        lag_probe_interval: float = LAG_PROBE_INTERVAL,
    ) -> None:
        self._states = {job.name: JobState(job=job) for job in jobs}
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._stop_timeout = stop_timeout
        self._backoff_cap = backoff_cap
        self._lag_probe_interval = lag_probe_interval
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="worker-jobs")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._stopping = False
        self._running = False
        self.started_at: datetime | None = None
        self.stopped_at: datetime | None = None
        self.loop_lag_ms: float | None = None
        self.loop_lag_max_ms: float = 0.0

    # --- Public interface ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    @property
    def stopping(self) -> bool:
        return self._stopping

    def states(self) -> list[JobState]:
        return list(self._states.values())

    def status(self) -> dict[str, Any]:
        return {
            "running": self._running,
            "stopping": self._stopping,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "loop_lag_ms": self.loop_lag_ms,
            "loop_lag_max_ms": self.loop_lag_max_ms,
            "jobs": [state.snapshot() for state in self._states.values()],
        }

    def request_stop(self) -> None:
        """Ask the runner to stop. Safe to call from any thread, any number of times."""
        loop, event = self._loop, self._stop_requested
        if loop is None or event is None or loop.is_closed():
            self._stopping = True
            return
        try:
            running_loop = asyncio.get_running_loop()
        except RuntimeError:
            running_loop = None
        if running_loop is loop:
            self._begin_stop(event)
        else:
            loop.call_soon_threadsafe(self._begin_stop, event)

    async def run(self) -> None:
        """Run every job until ``request_stop()``; then stop them gracefully."""
        if self._loop is not None:
            raise WorkerError("A runner runs once; build a new one to run again.")
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        if self._stopping:  # asked to stop before it started
            self._stop_requested.set()
        self._running = True
        self.started_at = self._wall_clock()
        current_runner.set(self)  # run() has a context of its own: its task's
        logger.info("runner_started", jobs=list(self._states), pid=os.getpid())
        try:
            async with ThreadSensitiveContext(executor=self._executor):
                await self._supervise()
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)
            metrics.process_ended()
            self._running = False
            self.stopped_at = self._wall_clock()

    # --- Running ------------------------------------------------------------------------

    def _begin_stop(self, event: asyncio.Event) -> None:
        if not self._stopping or not event.is_set():
            self._stopping = True
            event.set()

    async def _supervise(self) -> None:
        assert self._stop_requested is not None
        loops = {name: self._start_loop(state) for name, state in self._states.items()}
        probe = asyncio.create_task(self._probe_lag(), name="worker-lag-probe")
        stop = asyncio.create_task(self._stop_requested.wait(), name="worker-stop")
        try:
            while not self._stopping:
                done, _ = await asyncio.wait(
                    {stop, *loops.values()}, return_when=asyncio.FIRST_COMPLETED
                )
                for name, task in list(loops.items()):
                    if task in done and not self._stopping:
                        self._report_crash(name, task)
                        loops[name] = self._start_loop(self._states[name], delay=RESTART_DELAY)
        finally:
            await self._shut_down(loops, others=[probe, stop])

    def _start_loop(self, state: JobState, *, delay: float = 0.0) -> asyncio.Task[None]:
        return asyncio.create_task(
            self._job_loop(state, delay), name=f"worker-job:{state.job.name}"
        )

    def _report_crash(self, name: str, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        logger.error(
            "job_loop_crashed",
            job=name,
            restart_in_s=RESTART_DELAY,
            exc_info=error if error is not None else None,
            error=repr(error) if error is not None else "cancelled",
        )

    async def _job_loop(self, state: JobState, delay: float) -> None:
        job = state.job
        first = self._clock() + delay
        index = 0
        while not self._stopping:
            due_at = schedule.due(first=first, interval=job.interval, index=index)
            wait = due_at - self._clock()
            if wait > 0:
                await self._sleep(wait)
            if self._stopping:
                return
            succeeded = await self._run_once(state, lag=max(0.0, self._clock() - due_at))
            finished = self._clock()
            not_before = finished
            if not succeeded:
                # Counted from when the failed run was due: one that failed slowly (waiting
                # for a database that is down) has spent that time already, so a job whose
                # backoff is one interval is still tried every interval, and notices that the
                # database is back within one.
                not_before = max(
                    finished,
                    due_at
                    + schedule.backoff(
                        interval=job.interval,
                        failures=state.consecutive_failures,
                        cap=self._backoff_cap,
                    ),
                )
            following = schedule.next_index(
                first=first, interval=job.interval, previous=index, not_before=not_before
            )
            skipped = following - index - 1
            if skipped:
                state.skipped += skipped
                metrics.JOB_SKIPPED.labels(job=job.name).inc(skipped)
                if succeeded:
                    logger.warning(
                        "job_late",
                        job=job.name,
                        skipped=skipped,
                        duration_ms=state.last_duration_ms,
                        interval_s=job.interval,
                    )
            index = following

    async def _run_once(self, state: JobState, *, lag: float, final: bool = False) -> bool:
        job = state.job
        run = state.runs + 1
        state.in_run = True
        state.last_started_at = now = self._wall_clock()
        started = self._clock()
        try:
            rows = await self._call(job, now)
        except Exception as error:  # noqa: BLE001  (isolation: one failed run ends nothing)
            self._record_failure(state, error, run=run, duration=self._clock() - started)
            return False
        finally:
            state.in_run = False
            state.runs = run
            state.last_finished_at = self._wall_clock()
            state.last_lag_ms = _milliseconds(lag)
        duration = self._clock() - started
        state.last_duration_ms = _milliseconds(duration)
        state.last_rows = rows
        metrics.JOB_RUNS.labels(job=job.name, outcome="success").inc()
        metrics.JOB_DURATION.labels(job=job.name).observe(duration)
        if rows:
            metrics.JOB_ROWS.labels(job=job.name).inc(rows)
        fields: dict[str, Any] = {"final": True} if final else {}
        logger.info(
            "job_run",
            job=job.name,
            run=run,
            rows=rows,
            duration_ms=state.last_duration_ms,
            lag_ms=state.last_lag_ms,
            **fields,
        )
        if state.consecutive_failures:
            assert state.failing_since is not None
            logger.info(
                "job_recovered",
                job=job.name,
                failures=state.consecutive_failures,
                outage_s=round(self._clock() - state.failing_since, 3),
            )
            state.consecutive_failures = 0
            state.failing_since = None
        return True

    async def _call(self, job: Job, now: datetime) -> JobResult:
        if not job.is_async:
            return await sync_to_async(_call_sync)(job, now)
        await sync_to_async(close_old_connections)()
        try:
            function = cast(Callable[[datetime], Awaitable[JobResult]], job.function)
            return await function(now)
        finally:
            await sync_to_async(close_old_connections)()

    def _record_failure(
        self, state: JobState, error: Exception, *, run: int, duration: float
    ) -> None:
        now = self._clock()
        outcome = "deferred" if isinstance(error, JobDeferred) else "failure"
        metrics.JOB_RUNS.labels(job=state.job.name, outcome=outcome).inc()
        metrics.JOB_DURATION.labels(job=state.job.name).observe(duration)
        state.failures += 1
        state.consecutive_failures += 1
        state.last_duration_ms = _milliseconds(duration)
        state.last_error = f"{type(error).__name__}: {error}"
        if state.consecutive_failures == 1 and isinstance(error, JobDeferred):
            state.failing_since = state.last_summary = now
            logger.warning(
                "job_deferred",
                job=state.job.name,
                run=run,
                duration_ms=state.last_duration_ms,
                reason=str(error),
            )
        elif state.consecutive_failures == 1:
            state.failing_since = state.last_summary = now
            logger.error(
                "job_failed",
                job=state.job.name,
                run=run,
                duration_ms=state.last_duration_ms,
                error=state.last_error,
                exc_info=error,
            )
        elif (
            state.last_summary is not None and now - state.last_summary >= FAILURE_SUMMARY_INTERVAL
        ):
            state.last_summary = now
            assert state.failing_since is not None
            logger.warning(
                "job_still_failing",
                job=state.job.name,
                consecutive_failures=state.consecutive_failures,
                failing_s=round(now - state.failing_since, 3),
                error=state.last_error,
            )

    async def _probe_lag(self) -> None:
        while True:
            started = self._clock()
            await self._sleep(self._lag_probe_interval)
            lag = max(0.0, self._clock() - started - self._lag_probe_interval)
            self.loop_lag_ms = _milliseconds(lag)
            metrics.LOOP_LAG.set(lag)
            self.loop_lag_max_ms = max(self.loop_lag_max_ms, self.loop_lag_ms)

    # --- Stopping -----------------------------------------------------------------------

    async def _shut_down(
        self, loops: dict[str, asyncio.Task[None]], *, others: list[asyncio.Task[Any]]
    ) -> None:
        self._stopping = True
        logger.info(
            "runner_stopping", in_run=[s.job.name for s in self._states.values() if s.in_run]
        )
        for task in others:
            task.cancel()
        for name, task in loops.items():
            if not self._states[name].in_run:
                task.cancel()  # it is only waiting for its next run
        pending = [task for task in loops.values() if not task.done()]
        abandoned: list[str] = []
        if pending:
            _, late = await asyncio.wait(pending, timeout=self._stop_timeout)
            for name, task in loops.items():
                if task in late:
                    abandoned.append(name)
                    task.cancel()
        await asyncio.gather(*loops.values(), *others, return_exceptions=True)
        final_runs = 0
        skipped: list[str] = []
        for state in self._states.values():
            if not state.job.run_at_shutdown:
                continue
            if abandoned:
                # A run outlived its bound: what blocked it (most often the database) would
                # hold the final run too, and a synchronous call cannot be cut short, so the
                # process could not stop within its bound. The next runner does the work.
                skipped.append(state.job.name)
                continue
            try:
                succeeded = await asyncio.wait_for(
                    self._run_once(state, lag=0.0, final=True), timeout=self._stop_timeout
                )
            except TimeoutError:
                abandoned.append(state.job.name)
                continue
            final_runs += succeeded
        logger.info(
            "runner_stopped", final_runs=final_runs, abandoned=abandoned, final_skipped=skipped
        )
