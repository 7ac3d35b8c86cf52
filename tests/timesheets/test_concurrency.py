"""Concurrent writers, each on its own connection, as concurrent requests would be."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from tests.invariants import assert_invariants
from timesheets.models import Project, Segment, Timesheet
from timesheets.services import timesheet_accrue_running, timesheet_create, timesheet_start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("settings_limits")]

STARTS = 50


def test_fifty_concurrent_starts_for_one_person_leave_exactly_one_running(
    alice: User, project: Project
) -> None:
    timesheets = [
        timesheet_create(owner=alice, project=project, description=f"{n}", now=timezone.now())
        for n in range(STARTS)
    ]
    barrier = threading.Barrier(STARTS)

    def start(timesheet: Timesheet) -> None:
        try:
            barrier.wait()
            timesheet_start(timesheet=timesheet, now=timezone.now())
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=STARTS) as pool:
        list(pool.map(start, timesheets))

    assert Timesheet.objects.filter(status=Timesheet.Status.RUNNING).count() == 1
    assert Segment.objects.count() == STARTS, "every start opened a run"
    replaced = Segment.objects.filter(end_reason=Segment.EndReason.REPLACED).count()
    assert replaced == STARTS - 1, "and every start but the last replaced the one before"
    assert_invariants(now=timezone.now())


def test_starts_under_a_limit_of_two_and_a_busy_accrual_never_deadlock(
    alice: User, bob: User, project: Project, settings: Any
) -> None:
    settings.TIMESHEETS_MAX_RUNNING_PER_USER = 2
    timesheets = [
        timesheet_create(owner=owner, project=project, description=f"{n}", now=timezone.now())
        for owner in (alice, bob)
        for n in range(10)
    ]
    done = threading.Event()
    errors: list[BaseException] = []

    def accrue_until_done() -> None:
        try:
            while not done.is_set():
                timesheet_accrue_running(now=timezone.now())
        except Exception as error:  # noqa: BLE001  (asserted empty below)
            errors.append(error)
        finally:
            connection.close()

    def start_all(mine: list[Timesheet]) -> None:
        try:
            for _ in range(5):
                for timesheet in mine:
                    timesheet_start(timesheet=timesheet, now=timezone.now())
        except Exception as error:  # noqa: BLE001  (asserted empty below)
            errors.append(error)
        finally:
            connection.close()

    accruer = threading.Thread(target=accrue_until_done)
    accruer.start()
    starters = [threading.Thread(target=start_all, args=(timesheets[half::2],)) for half in (0, 1)]
    for starter in starters:
        starter.start()
    for starter in starters:
        starter.join()
    done.set()
    accruer.join()

    assert errors == []
    assert_invariants(now=timezone.now(), max_running_per_user=2)
