"""What both backends share: where the accrual's batches end."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User

from tests.conftest import T0, at
from timesheets.backends import batch_ends
from timesheets.models import Project
from timesheets.services import timesheet_create, timesheet_start, timesheet_stop


@pytest.mark.parametrize(
    ("running", "size", "ends"),
    [
        (0, 2, []),
        (1, 2, [0]),
        (4, 2, [1, 3]),
        (5, 2, [1, 3, 4]),
        (5, 5, [4]),
        (5, 10, [4]),
        (3, 1, [0, 1, 2]),
    ],
)
def test_every_size_th_running_id_then_the_last(
    make_user: Callable[[str], User], project: Project, running: int, size: int, ends: list[int]
) -> None:
    ids = []
    for n in range(running):
        timesheet = timesheet_create(
            owner=make_user(f"u{n}"), project=project, description="", now=T0
        )
        timesheet_start(timesheet_id=timesheet.pk, now=at(n))
        ids.append(timesheet.pk)

    assert batch_ends(size=size) == [ids[index] for index in ends]


def test_stopped_and_never_started_timesheets_are_not_counted(
    make_user: Callable[[str], User], project: Project
) -> None:
    running = []
    for n in range(6):
        owner = make_user(f"u{n}")
        timesheet = timesheet_create(owner=owner, project=project, description="", now=T0)
        if n % 3 == 0:
            continue  # never started
        timesheet_start(timesheet_id=timesheet.pk, now=at(n))
        if n % 3 == 1:
            timesheet_stop(timesheet_id=timesheet.pk, now=at(10))
        else:
            running.append(timesheet.pk)

    assert batch_ends(size=1) == running
    assert batch_ends(size=2) == [running[1]]
