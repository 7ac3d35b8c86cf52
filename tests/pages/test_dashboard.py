"""The staff dashboard: running timers, today's time per project, every runner's health."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db.models.functions import Now
from django.test import Client
from django.utils import timezone

from tests.pages.test_views import noon_zone
from timesheets.models import Profile, Project
from timesheets.services import segment_add, timesheet_create
from worker.models import RunnerProcess
from worker.selectors import SILENT_AFTER
from worker.services import runner_process_beat

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settings_limits")]


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_it_needs_the_permission_to_see_everyones_time(
    alice: User, make_user: Callable[..., User]
) -> None:
    assert signed_in(alice).get("/dashboard/").status_code == 403
    assert Client().get("/dashboard/")["Location"].startswith("/accounts/login/")
    assert "Dashboard" not in signed_in(alice).get("/").content.decode()

    viewer = make_user("vera", permissions=["timesheets.view_timesheet"])
    assert signed_in(viewer).get("/dashboard/").status_code == 200
    assert 'href="/dashboard/"' in signed_in(viewer).get("/").content.decode()


def test_it_shows_who_runs_a_timer_and_todays_time_per_project(
    staff: User, alice: User, bob: User, project: Project
) -> None:
    # Around noon in the staff member's time zone: the last hour falls on today.
    Profile.objects.create(user=staff, time_zone=noon_zone())
    other = Project.objects.create(code="beta", designation="Beta")
    now = timezone.now()
    running = timesheet_create(
        owner=alice, project=project, description="Kick-off", now=now, start=True
    )
    done = timesheet_create(owner=bob, project=other, description="Review", now=now)
    segment_add(
        timesheet_id=done.pk,
        started_at=now - timedelta(minutes=40),
        ended_at=now - timedelta(minutes=10),
        actor=bob,
    )

    page = signed_in(staff).get("/dashboard/").content.decode()

    assert f'id="running-{running.pk}"' in page
    assert "Kick-off" in page
    assert "alice" in page
    assert f'id="running-{done.pk}"' not in page, "a stopped timesheet is not running"
    assert "beta</td><td>0:30:00" in page, "bob's 30 minutes on beta today"
    assert 'data-live-region="running"' in page
    assert "pages/live.js" in page


def test_it_shows_each_runner_and_whether_it_answers(staff: User) -> None:
    started = timezone.now()
    runner_process_beat(
        host="web-1", started_at=started, status={"pid": 11, "running": True, "jobs": []}
    )
    runner_process_beat(
        host="worker-1",
        started_at=started,
        status={
            "pid": 12,
            "running": True,
            "jobs": [{"name": "accrue", "runs": 4, "consecutive_failures": 2, "last_error": "x"}],
        },
    )
    runner_process_beat(
        host="worker-2", started_at=started, status={"pid": 13, "running": True, "jobs": []}
    )
    RunnerProcess.objects.filter(host="worker-2").update(
        seen_at=Now() - SILENT_AFTER - timedelta(seconds=5)
    )

    page = signed_in(staff).get("/dashboard/").content.decode()

    assert 'class="runner runner-healthy"><td>web-1:11' in page
    assert 'class="runner runner-failing"><td>worker-1:12' in page
    assert 'class="runner runner-silent"><td>worker-2:13' in page
