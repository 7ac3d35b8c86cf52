"""The Reports page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from tests.reports.conftest import AddRun

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settings_limits")]


def test_login_required(client: Client) -> None:
    response = client.get("/reports/")

    assert response.status_code == 302
    assert "next=/reports/" in response["Location"]


def test_the_table_and_the_links(client: Client, alice: User, add_run: AddRun) -> None:
    add_run(alice, datetime(2026, 2, 2, 22, tzinfo=UTC), datetime(2026, 2, 3, 1, tzinfo=UTC))
    client.force_login(alice)

    response = client.get("/reports/?from=2026-02-01&to=2026-02-28&group_by=day")

    assert response.status_code == 200
    page = response.content.decode()
    assert "{% extends" not in page
    assert "<title>Reports · Timesheets</title>" in page
    assert "<td>2026-02-02</td><td>2:00:00</td>" in page
    assert "<td>2026-02-03</td><td>1:00:00</td>" in page
    assert "<strong>3:00:00</strong>" in page
    assert '<input type="checkbox" name="group_by" value="day" id="id_group_by_2" checked>' in page
    assert '<input type="checkbox" name="group_by" value="user" id="id_group_by_0">' in page
    csv_url = response.context["csv_url"]
    assert csv_url.startswith("/api/reports?")
    assert parse_qs(urlsplit(csv_url).query) == {
        "from": ["2026-02-01"],
        "to": ["2026-02-28"],
        "group_by": ["day"],
        "format": ["csv"],
    }
    assert f'href="{response.context["xlsx_url"].replace("&", "&amp;")}"' in page


def test_the_page_opens_on_the_last_week(client: Client, alice: User, add_run: AddRun) -> None:
    now = timezone.now()
    add_run(alice, now - timedelta(hours=2), now - timedelta(hours=1))
    client.force_login(alice)

    response = client.get("/reports/")

    assert response.status_code == 200
    assert response.context["report"].total == timedelta(hours=1)
    assert response.context["groups"] == ("day", "project")


def test_bad_filters_are_form_errors(client: Client, alice: User) -> None:
    client.force_login(alice)

    response = client.get("/reports/?from=2026-02-10&to=2026-02-01&group_by=month")

    assert response.status_code == 400
    page = response.content.decode()
    assert "comes before the first" in page
    assert "month is not one of the available choices" in page
    assert "report" not in response.context


def test_another_persons_report_needs_the_permission(
    client: Client, alice: User, bob: User
) -> None:
    client.force_login(bob)

    response = client.get("/reports/?from=2026-02-01&to=2026-02-02&user=alice")

    assert response.status_code == 403
    assert "view_timesheet permission" in response.content.decode()


def test_filters_left_empty_on_the_form_are_left_out_of_the_downloads(
    client: Client, alice: User, add_run: AddRun
) -> None:
    add_run(alice, datetime(2026, 2, 2, 9, tzinfo=UTC), datetime(2026, 2, 2, 10, tzinfo=UTC))
    client.force_login(alice)

    response = client.get("/reports/?from=2026-02-01&to=2026-02-28&group_by=day&user=&project=")

    for link in (response.context["csv_url"], response.context["xlsx_url"]):
        given = parse_qs(urlsplit(link).query, keep_blank_values=True)
        assert {"user", "project"}.isdisjoint(given), link
    answer = client.get(response.context["csv_url"])
    assert answer.status_code == 200
    assert answer["Content-Disposition"].endswith('.csv"')
    answer.close()
