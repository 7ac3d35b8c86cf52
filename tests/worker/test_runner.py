"""The runner under virtual time: every timing below is exact."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.worker.support import EPOCH, VirtualTime, events, rendered
from worker import metrics
from worker.exceptions import JobDeferred, WorkerError
from worker.registry import Job
from worker.runner import FAILURE_SUMMARY_INTERVAL, Runner


class Recorder:
    """An async job that records when it runs, takes virtual time, and fails on cue."""

    def __init__(
        self,
        time: VirtualTime,
        *,
        durations: dict[int, float] | None = None,
        fail: Callable[[int], bool] = lambda run: False,
        crash_on: int | None = None,
    ) -> None:
        self.time = time
        self.durations = durations or {}
        self.fail = fail
        self.crash_on = crash_on
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.concurrent = 0
        self.max_concurrent = 0

    async def __call__(self, now: datetime) -> int:
        run = len(self.starts) + 1
        self.starts.append(self.time.now)
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            if run in self.durations:
                await self.time.sleep(self.durations[run])
            if run == self.crash_on:
                raise Crash(f"run {run} broke the loop itself")
            if self.fail(run):
                raise RuntimeError(f"run {run} failed")
            return run * 10
        finally:
            self.concurrent -= 1
            self.ends.append(self.time.now)


class Crash(BaseException):
    """Escapes the per-run isolation, which catches Exception only."""


def make_runner(time: VirtualTime, *jobs: Job, **options: Any) -> Runner:
    return Runner(
        jobs=jobs,
        clock=time.clock,
        sleep=time.sleep,
        wall_clock=time.wall_clock,
        lag_probe_interval=3600.0,
        **options,
    )


def relative(instants: list[float], start: float = 1000.0) -> list[float]:
    return [round(instant - start, 6) for instant in instants]


async def test_runs_start_at_a_fixed_rate_without_drift() -> None:
    time = VirtualTime()
    tick = Recorder(time, durations={n: 1.25 for n in range(1, 20)})
    runner = make_runner(time, Job(name="tick", function=tick, interval=5.0))
    task = asyncio.create_task(runner.run())

    await time.run_until(1000 + 5 * 9 + 1, actors=2)

    assert relative(tick.starts) == [5.0 * k for k in range(10)]
    runner.request_stop()
    await time.finish(task, actors=1)  # the run started at 45 s takes until 46.25 s


async def test_late_runs_are_skipped_and_counted_never_bunched(
    caplog: pytest.LogCaptureFixture,
) -> None:
    time = VirtualTime()
    tick = Recorder(time, durations={1: 1.0, 2: 12.0, 3: 1.0})
    runner = make_runner(time, Job(name="tick", function=tick, interval=5.0))
    task = asyncio.create_task(runner.run())

    await time.run_until(1026, actors=2)

    # Run 2 starts at 5 and ends at 17: the runs due at 10 and 15 are skipped, not made up.
    assert relative(tick.starts) == [0.0, 5.0, 20.0, 25.0]
    assert tick.max_concurrent == 1, "a job never overlaps itself"
    (state,) = runner.states()
    assert state.skipped == 2
    (late,) = events(caplog, "job_late")
    assert (late["job"], late["skipped"]) == ("tick", 2)
    runner.request_stop()
    await time.finish(task)


async def test_every_run_logs_one_event_with_its_numbers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    time = VirtualTime()
    tick = Recorder(time, durations={1: 0.5, 2: 0.25})
    runner = make_runner(time, Job(name="tick", function=tick, interval=2.0))
    task = asyncio.create_task(runner.run())

    await time.run_until(1002.5, actors=2)

    runs = events(caplog, "job_run")
    assert [(e["job"], e["run"], e["rows"], e["duration_ms"]) for e in runs] == [
        ("tick", 1, 10, 500.0),
        ("tick", 2, 20, 250.0),
    ]
    assert all(e["lag_ms"] == 0.0 for e in runs)
    assert all("final" not in e for e in runs), "only the run at shutdown is final"
    runner.request_stop()
    await time.finish(task)


async def test_a_job_failing_every_second_run_keeps_running_with_a_traceback_each_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    time = VirtualTime()
    flaky = Recorder(time, fail=lambda run: run % 2 == 0)
    runner = make_runner(time, Job(name="flaky", function=flaky, interval=1.0))
    task = asyncio.create_task(runner.run())

    await time.run_until(1009.5, actors=2)

    assert relative(flaky.starts) == [float(k) for k in range(10)], "no run is lost"
    failures = rendered(caplog, "job_failed")
    assert len(failures) == 5
    for line in failures:
        logged = json.loads(line)
        assert logged["level"] == "error"
        assert "Traceback (most recent call last)" in logged["exception"]
        assert "RuntimeError: run" in logged["exception"]
    (state,) = runner.states()
    assert (state.runs, state.failures, state.consecutive_failures) == (10, 5, 1)
    assert len(events(caplog, "job_recovered")) == 4
    runner.request_stop()
    await time.finish(task)


async def test_consecutive_failures_back_off_and_are_summarised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    time = VirtualTime()
    outage_ends = 1030.0
    broken = Recorder(time, fail=lambda run: time.now < outage_ends)
    runner = make_runner(time, Job(name="broken", function=broken, interval=0.2))
    task = asyncio.create_task(runner.run())

    await time.run_until(1032.0, actors=2)

    # 0.2 s, then doubling up to the default 1 s cap, then the regular 0.2 s once it works.
    assert relative(broken.starts)[:7] == [0.0, 0.2, 0.6, 1.4, 2.4, 3.4, 4.4]
    first_success = relative(broken.starts).index(30.4)
    assert relative(broken.starts)[first_success:] == [round(30.4 + 0.2 * k, 6) for k in range(9)]
    assert len(events(caplog, "job_failed")) == 1, "one error with its traceback..."
    summaries = events(caplog, "job_still_failing")
    assert 2 <= len(summaries) <= 30 / FAILURE_SUMMARY_INTERVAL, "...then a few summaries"
    (recovered,) = events(caplog, "job_recovered")
    assert recovered["failures"] == first_success == 32
    runner.request_stop()
    await time.finish(task)


async def test_a_deferred_run_is_a_warning_not_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    time = VirtualTime()
    starts: list[float] = []

    async def busy_once(now: datetime) -> int:
        starts.append(time.now)
        if len(starts) == 2:
            raise JobDeferred("the database stayed busy with other writers for 5 s")
        return 1

    name = "deferring"
    deferred_before = sample("worker_job_runs_total", job=name, outcome="deferred")
    runner = make_runner(time, Job(name=name, function=busy_once, interval=1.0))
    task = asyncio.create_task(runner.run())

    await time.run_until(1003.5, actors=2)
    runner.request_stop()
    await time.finish(task)

    assert relative(starts)[:4] == [0.0, 1.0, 2.0, 3.0], "the next run comes at its tick"
    assert not events(caplog, "job_failed")
    (deferred,) = (json.loads(line) for line in rendered(caplog, "job_deferred"))
    assert deferred["level"] == "warning"
    assert deferred["reason"] == "the database stayed busy with other writers for 5 s"
    assert "exception" not in deferred, "no traceback: nothing went wrong"
    assert sample("worker_job_runs_total", job=name, outcome="deferred") - deferred_before == 1.0
    assert sample("worker_job_runs_total", job=name, outcome="failure") == 0.0


async def test_a_loop_that_crashes_is_restarted(caplog: pytest.LogCaptureFixture) -> None:
    time = VirtualTime()
    tick = Recorder(time, crash_on=2)
    steady = Recorder(time)
    runner = make_runner(
        time,
        Job(name="tick", function=tick, interval=1.0),
        Job(name="steady", function=steady, interval=2.0),
    )
    task = asyncio.create_task(runner.run())

    await time.run_until(1005.5, actors=3)

    (crash,) = events(caplog, "job_loop_crashed")
    assert crash["job"] == "tick"
    assert "Traceback" in json.loads(rendered(caplog, "job_loop_crashed")[0])["exception"]
    # Run 2 crashed at 1 s; the loop starts again a second later, on a fresh schedule, and
    # the other job's loop goes on as it was.
    assert relative(tick.starts)[:3] == [0.0, 1.0, 2.0]
    assert relative(steady.starts) == [0.0, 2.0, 4.0]
    assert len(tick.starts) >= 5
    runner.request_stop()
    await time.finish(task)


async def test_stop_lets_the_run_in_progress_finish_then_runs_shutdown_jobs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    time = VirtualTime()
    slow = Recorder(time, durations={2: 3.0})
    final = Recorder(time)
    runner = make_runner(
        time,
        Job(name="slow", function=slow, interval=5.0),
        Job(name="final", function=final, interval=60.0, run_at_shutdown=True),
    )
    task = asyncio.create_task(runner.run())
    await time.run_until(1006.0, actors=3)  # run 2 of "slow" is in progress until 1008

    runner.request_stop()
    await time.finish(task, actors=1)

    assert relative(slow.ends) == [0.0, 8.0], "the run in progress finished"
    assert len(slow.starts) == 2, "and no other run started"
    assert relative(final.starts) == [0.0, 8.0], "the shutdown job ran once more at the end"
    (stopped,) = events(caplog, "runner_stopped")
    assert (stopped["final_runs"], stopped["abandoned"]) == (1, [])
    assert events(caplog, "job_run")[-1]["final"] is True
    assert events(caplog, "job_run")[-1]["lag_ms"] == 0.0
    assert not runner.running
    assert all(task.done() for task in asyncio.all_tasks() if task.get_name().startswith("worker"))


async def test_a_run_that_overruns_the_stop_bound_is_abandoned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    never = asyncio.Event()

    async def stuck(now: datetime) -> int:
        await never.wait()
        return 0

    runner = Runner(
        jobs=[Job(name="stuck", function=stuck, interval=1.0)],
        stop_timeout=0.2,
        lag_probe_interval=3600.0,
    )
    task = asyncio.create_task(runner.run())
    while not runner.states()[0].in_run:
        await asyncio.sleep(0.001)

    runner.request_stop()
    await asyncio.wait_for(task, timeout=5)

    (stopped,) = events(caplog, "runner_stopped")
    assert stopped["abandoned"] == ["stuck"]
    leftovers = [
        t for t in asyncio.all_tasks() if t.get_name().startswith("worker") and not t.done()
    ]
    assert leftovers == [], "nothing is left pending"


async def test_after_a_run_is_abandoned_the_final_runs_are_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    never = asyncio.Event()
    finals: list[datetime] = []

    async def stuck(now: datetime) -> int:
        await never.wait()
        return 0

    async def final(now: datetime) -> int:
        finals.append(now)
        return 0

    runner = Runner(
        jobs=[
            Job(name="stuck", function=stuck, interval=1.0),
            Job(name="final", function=final, interval=3600.0, run_at_shutdown=True),
        ],
        stop_timeout=0.2,
        lag_probe_interval=3600.0,
    )
    task = asyncio.create_task(runner.run())
    while not (runner.states()[0].in_run and finals):
        await asyncio.sleep(0.001)

    runner.request_stop()
    await asyncio.wait_for(task, timeout=5)

    (stopped,) = events(caplog, "runner_stopped")
    assert (stopped["abandoned"], stopped["final_skipped"], stopped["final_runs"]) == (
        ["stuck"],
        ["final"],
        0,
    )
    assert len(finals) == 1, "its first run only, none at shutdown"


async def test_the_status_snapshot_reports_each_job() -> None:
    time = VirtualTime()
    tick = Recorder(time, durations={1: 0.5}, fail=lambda run: run == 3)
    runner = make_runner(time, Job(name="tick", function=tick, interval=2.0))
    task = asyncio.create_task(runner.run())

    await time.run_until(1004.5, actors=2)
    status = runner.status()

    assert status["running"] is True
    assert (status["loop_lag_ms"], status["loop_lag_max_ms"]) == (None, 0.0), "not probed yet"
    assert status["started_at"] == EPOCH + timedelta(seconds=1000)
    (job,) = status["jobs"]
    assert job["name"] == "tick"
    assert job["interval_s"] == 2.0
    assert (job["runs"], job["failures"], job["consecutive_failures"]) == (3, 1, 1)
    assert job["last_rows"] == 20
    assert job["last_error"] == "RuntimeError: run 3 failed"
    assert job["skipped"] == 0
    assert job["last_lag_ms"] == 0.0
    runner.request_stop()
    await time.finish(task)
    assert runner.status()["running"] is False


async def test_the_loop_lag_is_measured() -> None:
    runner = Runner(jobs=[], lag_probe_interval=0.01)
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(0.05)
    threading.Event().wait(0.1)  # block the event loop for 100 ms
    await asyncio.sleep(0.05)

    runner.request_stop()
    await task

    assert runner.loop_lag_max_ms >= 50


async def test_a_runner_runs_once() -> None:
    runner = Runner(jobs=[])
    runner.request_stop()
    await runner.run()

    with pytest.raises(WorkerError, match="runs once"):
        await runner.run()


class Oversleep:
    """A sleep that wakes off its mark, as on a busy event loop: ``offsets`` says by how much
    each sleep shorter than ``spare`` seconds wakes late (or early, when negative)."""

    def __init__(self, time: VirtualTime, offsets: list[float], *, spare: float = 3600.0) -> None:
        self.time = time
        self.offsets = offsets
        self.spare = spare

    async def __call__(self, seconds: float) -> None:
        offset = self.offsets.pop(0) if seconds < self.spare and self.offsets else 0.0
        await self.time.sleep(seconds + offset)


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_a_run_that_fails_slowly_is_still_tried_at_every_tick() -> None:
    time = VirtualTime()
    # Each run waits 0.6 s for a database that does not answer, then fails.
    failing = Recorder(time, durations={n: 0.6 for n in range(1, 10)}, fail=lambda run: True)
    runner = make_runner(
        time, Job(name="fails_slowly", function=failing, interval=1.0), backoff_cap=1.0
    )
    task = asyncio.create_task(runner.run())

    await time.run_until(1004.5, actors=2)

    # The backoff (one interval here) counts from when the failed run was due, not from its
    # end 0.6 s later, which would try every other tick only.
    assert relative(failing.starts) == [0.0, 1.0, 2.0, 3.0, 4.0]
    runner.request_stop()
    await time.finish(task, actors=1)


async def test_each_run_reports_how_late_it_started(caplog: pytest.LogCaptureFixture) -> None:
    time = VirtualTime()
    tick = Recorder(time)
    # The loop wakes the job 0.25 s late, then 0.5 s late, then 0.1 s early.
    sleep = Oversleep(time, [0.25, 0.5, -0.1])
    runner = Runner(
        jobs=[Job(name="late", function=tick, interval=1.0)],
        clock=time.clock,
        sleep=sleep,
        wall_clock=time.wall_clock,
        lag_probe_interval=3600.0,
    )
    task = asyncio.create_task(runner.run())

    await time.run_until(1003.5, actors=2)

    assert relative(tick.starts) == [0.0, 1.25, 2.5, 2.9]
    assert [e["lag_ms"] for e in events(caplog, "job_run")] == [0.0, 250.0, 500.0, 0.0]
    (state,) = runner.states()
    assert state.last_lag_ms == 0.0, "a run that starts early is not late"
    runner.request_stop()
    await time.finish(task)


async def test_the_loop_lag_is_how_late_the_probe_woke() -> None:
    time = VirtualTime()
    sleep = Oversleep(time, [0.3, 0.1, -0.05], spare=math.inf)
    runner = Runner(
        jobs=[],
        clock=time.clock,
        sleep=sleep,
        wall_clock=time.wall_clock,
        lag_probe_interval=2.0,
    )
    task = asyncio.create_task(runner.run())
    readings = []
    for woke in (1002.3, 1004.4, 1006.35):
        await time.run_until(woke + 0.01, actors=1)
        readings.append(
            (runner.loop_lag_ms, runner.loop_lag_max_ms, sample("worker_event_loop_lag_seconds"))
        )

    assert readings == [
        (300.0, 300.0, pytest.approx(0.3)),
        (100.0, 300.0, pytest.approx(0.1)),
        (0.0, 300.0, 0.0),  # woke early: no lag, and the maximum stays
    ]
    runner.request_stop()
    await time.finish(task)


async def test_runs_rows_skips_and_durations_are_counted() -> None:
    time = VirtualTime()
    tick = Recorder(time, durations={1: 0.5, 2: 12.0}, fail=lambda run: run == 4)
    name = "metered"
    before = {
        metric: sample(metric, job=name)
        for metric in (
            "worker_job_rows_total",
            "worker_job_skipped_total",
            "worker_job_run_duration_seconds_count",
            "worker_job_run_duration_seconds_sum",
        )
    }
    fast = sample("worker_job_run_duration_seconds_bucket", job=name, le="0.5")
    runner = make_runner(time, Job(name=name, function=tick, interval=5.0))
    task = asyncio.create_task(runner.run())

    # Runs at 0 (0.5 s, 10 rows), 5 (12 s, 20 rows; the runs due at 10 and 15 are skipped),
    # 20 (30 rows) and 25 (fails).
    await time.run_until(1026, actors=2)
    runner.request_stop()
    await time.finish(task)

    assert relative(tick.starts) == [0.0, 5.0, 20.0, 25.0]
    after = {metric: sample(metric, job=name) for metric in before}
    assert sample("worker_job_runs_total", job=name, outcome="success") == 3.0
    assert sample("worker_job_runs_total", job=name, outcome="failure") == 1.0
    assert {metric: after[metric] - before[metric] for metric in before} == {
        "worker_job_rows_total": 60.0,
        "worker_job_skipped_total": 2.0,
        "worker_job_run_duration_seconds_count": 4.0,
        "worker_job_run_duration_seconds_sum": 12.5,
    }
    # The 0.5 s run, the instant one and the failed one, each in its bucket.
    assert sample("worker_job_run_duration_seconds_bucket", job=name, le="0.5") - fast == 3.0


async def test_a_final_run_that_overruns_the_stop_bound_is_abandoned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    never = asyncio.Event()
    calls = 0

    async def last(now: datetime) -> int:
        nonlocal calls
        calls += 1
        if calls > 1:  # the final run, at shutdown, never ends
            await never.wait()
        return 0

    runner = Runner(
        jobs=[Job(name="last", function=last, interval=3600.0, run_at_shutdown=True)],
        stop_timeout=0.2,
        lag_probe_interval=3600.0,
    )
    task = asyncio.create_task(runner.run())
    while runner.states()[0].runs < 1:
        await asyncio.sleep(0.001)

    runner.request_stop()
    await asyncio.wait_for(task, timeout=5)

    (stopped,) = events(caplog, "runner_stopped")
    assert (stopped["final_runs"], stopped["abandoned"]) == (0, ["last"])
    assert calls == 2


async def test_failures_are_summarised_every_ten_seconds(caplog: pytest.LogCaptureFixture) -> None:
    time = VirtualTime()
    broken = Recorder(time, fail=lambda run: True)
    runner = make_runner(time, Job(name="down", function=broken, interval=1.0))
    task = asyncio.create_task(runner.run())

    await time.run_until(1025.5, actors=2)

    assert relative(broken.starts) == [float(k) for k in range(26)], "retried every interval"
    summaries = events(caplog, "job_still_failing")
    assert [(e["consecutive_failures"], e["failing_s"]) for e in summaries] == [
        (11, 10.0),
        (21, 20.0),
    ]
    assert FAILURE_SUMMARY_INTERVAL == 10.0
    runner.request_stop()
    await time.finish(task)


async def test_the_loop_lag_is_probed_every_second_by_default() -> None:
    time = VirtualTime()
    asked: list[float] = []

    async def sleep(seconds: float) -> None:
        asked.append(seconds)
        await time.sleep(seconds)

    runner = Runner(jobs=[], clock=time.clock, sleep=sleep, wall_clock=time.wall_clock)
    assert not runner.running, "not before it runs"
    task = asyncio.create_task(runner.run())

    await time.run_until(1003.5, actors=1)

    assert asked == [1.0, 1.0, 1.0, 1.0]
    runner.request_stop()
    await time.finish(task)


async def test_a_stop_asked_on_the_loop_takes_effect_at_once() -> None:
    time = VirtualTime()
    runner = make_runner(time, Job(name="tick", function=Recorder(time), interval=1.0))
    task = asyncio.create_task(runner.run())
    await time.run_until(1000.5, actors=2)

    runner.request_stop()

    assert runner.stopping
    await time.finish(task)


async def test_a_stop_asked_from_another_thread_stops_the_runner() -> None:
    time = VirtualTime()
    runner = make_runner(time, Job(name="tick", function=Recorder(time), interval=1.0))
    task = asyncio.create_task(runner.run())
    await time.run_until(1000.5, actors=2)

    await asyncio.to_thread(runner.request_stop)
    await time.finish(task)

    assert not runner.running


async def test_sync_jobs_share_one_thread_which_ends_with_the_runner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    time = VirtualTime()
    threads: list[str] = []
    both_called = threading.Barrier(2, timeout=0.5)

    def job(now: datetime) -> int:
        threads.append(threading.current_thread().name)
        with contextlib.suppress(threading.BrokenBarrierError):
            both_called.wait()  # only reached by both at once if they run side by side
        return 0

    ended: list[int] = []
    monkeypatch.setattr(metrics, "process_ended", lambda: ended.append(1))
    runner = make_runner(
        time,
        Job(name="first", function=job, interval=1.0),
        Job(name="second", function=job, interval=1.0),
    )
    task = asyncio.create_task(runner.run())
    await time.run_until(1002.5, actors=3)
    runner.request_stop()
    await time.finish(task)

    assert len(threads) == 6
    assert len(set(threads)) == 1, "one thread does all the database work"
    assert ended == [1], "the process's live gauges are let go"
    give_up = asyncio.get_running_loop().time() + 5
    while any(t.name == threads[0] for t in threading.enumerate()):
        assert asyncio.get_running_loop().time() < give_up, "the job thread outlived the runner"
        await asyncio.sleep(0.01)


async def test_durations_are_reported_to_the_microsecond(caplog: pytest.LogCaptureFixture) -> None:
    time = VirtualTime()
    tick = Recorder(time, durations={1: 0.0000004, 2: 0.0012004})
    runner = make_runner(time, Job(name="tick", function=tick, interval=1.0))
    task = asyncio.create_task(runner.run())

    await time.run_until(1001.5, actors=2)

    assert [e["duration_ms"] for e in events(caplog, "job_run")] == [0.0, 1.2]
    runner.request_stop()
    await time.finish(task)
