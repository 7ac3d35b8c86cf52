"""Random sequences of every operation, with the invariants checked after each step.

The sequences are seeded, so a failure names the seed and step that reproduce it.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from tests.conftest import T0
from tests.invariants import assert_invariants
from timesheets.models import Project, Timesheet
from timesheets.services import (
    timesheet_aaccrue_running,
    timesheet_accrue_running,
    timesheet_create,
    timesheet_start,
    timesheet_stop,
    timesheet_stop_forgotten,
)

pytestmark = pytest.mark.django_db

STEPS = 150


@pytest.mark.parametrize("limit", [1, 0, 2])
@pytest.mark.parametrize("seed", [1, 2])
def test_invariants_hold_after_every_step(
    seed: int, limit: int, make_user: Any, project: Project, settings: Any
) -> None:
    settings.TIMESHEETS_MAX_RUNNING_PER_USER = limit
    settings.TIMESHEETS_MAX_RUNNING_HOURS = 0.01  # 36 s, so that runs do reach it
    rng = random.Random(seed)
    users = [make_user(f"user{n}") for n in range(3)]
    timesheets = [
        timesheet_create(owner=user, project=project, description=f"{n}", now=T0)
        for user in users
        for n in range(3)
    ]
    now = T0
    imputed: dict[int, timedelta] = {}
    for step in range(STEPS):
        now += timedelta(microseconds=rng.randrange(1, 8_000_000))
        timesheet = Timesheet.objects.get(pk=rng.choice(timesheets).pk)
        operation = rng.choice(["start", "start", "stop", "accrue", "accrue", "skewed", "forgot"])
        match operation:
            case "start":
                timesheet_start(timesheet_id=timesheet.pk, now=now)
            case "stop":
                timesheet_stop(timesheet_id=timesheet.pk, now=now)
            case "accrue":
                if rng.random() < 0.5:
                    timesheet_accrue_running(now=now)
                else:
                    async_to_sync(timesheet_aaccrue_running)(now=now)
            case "skewed":  # a process whose clock is a little behind or ahead
                skew = timedelta(milliseconds=rng.randrange(-50, 50))
                timesheet_accrue_running(now=now + skew)
                now = max(now, now + skew)
            case "forgot":
                timesheet_stop_forgotten(now=now)
        try:
            imputed = assert_invariants(
                now=now, max_running_per_user=limit, previous_imputed=imputed
            )
        except AssertionError as error:
            raise AssertionError(f"seed {seed}, step {step} ({operation}): {error}") from None
