"""The admin's timesheet list: a run-day filter, and the total of the filtered rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from timesheets.models import Profile, Project, Segment, Timesheet
from timesheets.services import timesheet_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settings_limits")]

TIMESHEETS = reverse("admin:timesheets_timesheet_changelist")


@pytest.fixture
def root(db: None) -> User:
    user: User = User.objects.create_superuser(username="root", password=None, email="r@e.org")
    Profile.objects.create(user=user, time_zone="Europe/Paris")
    return user


@pytest.fixture
def admin_client_paris(root: User) -> Client:
    client = Client()
    client.force_login(root)
    return client


def entry(
    owner: User, project: Project, description: str, *runs: tuple[datetime, datetime]
) -> Timesheet:
    timesheet = timesheet_create(owner=owner, project=project, description=description)
    for start, end in runs:
        Segment.objects.create(
            timesheet=timesheet,
            owner=owner,
            started_at=start,
            ended_at=end,
            end_reason=Segment.EndReason.MANUAL,
        )
    return timesheet


def utc(*parts: int) -> datetime:
    return datetime(*parts).replace(tzinfo=UTC)  # type: ignore[arg-type]


@pytest.fixture
def entries(alice: User, bob: User, project: Project) -> None:
    # 22:30 to 23:30 UTC on 1 March is 23:30 to 00:30 in Paris: half on 1 March, half on 2 March.
    entry(alice, project, "across-midnight", (utc(2026, 3, 1, 22, 30), utc(2026, 3, 1, 23, 30)))
    entry(bob, project, "in-april", (utc(2026, 4, 10, 8), utc(2026, 4, 10, 10)))


@pytest.mark.usefixtures("entries")
def test_all_rows_and_their_total(admin_client_paris: Client) -> None:
    response = admin_client_paris.get(TIMESHEETS)

    page = response.content.decode()
    assert response.status_code == 200
    assert "Total of the 2 timesheets listed: <strong>3:00:00</strong>" in page
    assert 'name="run_from"' in page
    assert "Europe/Paris" in page


@pytest.mark.usefixtures("entries")
def test_a_run_day_range_filters_rows_and_clips_the_total(admin_client_paris: Client) -> None:
    response = admin_client_paris.get(f"{TIMESHEETS}?run_from=2026-03-02&run_to=2026-03-02")

    page = response.content.decode()
    assert "across-midnight" in page
    assert "in-april" not in page
    assert "Total of the 1 timesheet listed, on the chosen days: <strong>0:30:00</strong>" in page


@pytest.mark.usefixtures("entries")
def test_an_open_ended_range_and_other_filters_combine(
    admin_client_paris: Client, bob: User
) -> None:
    response = admin_client_paris.get(f"{TIMESHEETS}?run_from=2026-03-15&owner__id__exact={bob.pk}")

    page = response.content.decode()
    assert "in-april" in page
    assert "across-midnight" not in page
    assert "<strong>2:00:00</strong>" in page
    assert f'<input type="hidden" name="owner__id__exact" value="{bob.pk}">' in page


@pytest.mark.usefixtures("entries")
@pytest.mark.parametrize("query", ["run_from=yesterday", "run_to=0001-01-01"])
def test_a_day_that_is_no_date_shows_the_list_with_a_warning(
    admin_client_paris: Client, query: str
) -> None:
    response = admin_client_paris.get(f"{TIMESHEETS}?{query}")

    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")
