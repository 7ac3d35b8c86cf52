"""Concurrent writers, each on its own connection, as concurrent requests would be."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from tests.invariants import assert_invariants
from timesheets.models import Project, Segment, Timesheet
from timesheets.services import timesheet_create, timesheet_start

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
