from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from timesheets import jobs as timesheet_jobs
from worker import registry
from worker.exceptions import JobConfigurationError
from worker.registry import discover, job


@pytest.fixture
def declarations(monkeypatch: pytest.MonkeyPatch) -> list[registry.Declaration]:
    """An empty registry for the test, restored afterwards."""
    fresh: list[registry.Declaration] = []
    monkeypatch.setattr(registry, "_declarations", fresh)
    return fresh


def test_discover_finds_the_apps_jobs_and_their_settings(settings: Any) -> None:
    settings.WORKER_TICK_SECONDS = 0.2
    settings.WORKER_ORM_MODE = "sync_to_async"
    settings.TIMESHEETS_MAX_RUNNING_HOURS = 12

    jobs = {found.name: found for found in discover()}

    assert set(jobs) == {
        "accrue_running_timesheets",
        "stop_forgotten_timesheets",
        "prune_events",
        "runner_heartbeat",
        "deliver_webhooks",
    }
    accrue = jobs["accrue_running_timesheets"]
    assert accrue.interval == 0.2
    assert accrue.run_at_shutdown
    assert accrue.function is timesheet_jobs.accrue_running_timesheets
    assert not accrue.is_async
    assert not jobs["stop_forgotten_timesheets"].run_at_shutdown


def test_the_orm_mode_picks_the_native_implementation(settings: Any) -> None:
    settings.WORKER_ORM_MODE = "native"

    accrue = {found.name: found for found in discover()}["accrue_running_timesheets"]

    assert accrue.function is timesheet_jobs.accrue_running_timesheets_natively
    assert accrue.is_async


def test_the_forgotten_timer_job_is_off_without_a_limit(settings: Any) -> None:
    settings.TIMESHEETS_MAX_RUNNING_HOURS = 0

    assert "stop_forgotten_timesheets" not in {found.name for found in discover()}


def test_two_enabled_jobs_cannot_share_a_name(declarations: list[Any]) -> None:
    def tick(now: datetime) -> int:
        return 0

    job(interval=1.0, name="same")(tick)
    job(interval=2.0, name="same")(tick)

    with pytest.raises(JobConfigurationError, match="Two enabled jobs are named 'same'"):
        discover()


@pytest.mark.parametrize("interval", [0, -1.0, float("nan")])
def test_an_interval_must_be_positive(declarations: list[Any], interval: float) -> None:
    job(interval=interval, name="broken")(lambda now: None)

    with pytest.raises(JobConfigurationError, match="'broken' has interval"):
        discover()
