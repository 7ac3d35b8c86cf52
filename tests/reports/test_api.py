"""GET /api/reports: totals in the caller's time zone, files, permissions and bad input."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient
from openpyxl import load_workbook

from tests.reports.conftest import AddRun
from timesheets.models import Profile

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settings_limits")]

RANGE = "from=2026-02-01&to=2026-02-28"


@pytest.fixture
def runs(alice: User, bob: User, add_run: AddRun) -> None:
    # 23:00 to 01:00 UTC: one day in UTC's terms, split in two in Paris (UTC+1 in February).
    add_run(alice, datetime(2026, 2, 2, 22, tzinfo=UTC), datetime(2026, 2, 3, 0, tzinfo=UTC))
    add_run(bob, datetime(2026, 2, 4, 9, tzinfo=UTC), datetime(2026, 2, 4, 12, tzinfo=UTC))
    Profile.objects.create(user=alice, time_zone="Europe/Paris")


async def content(response: Any) -> bytes:
    assert response.streaming
    return b"".join([chunk async for chunk in response.streaming_content])


@pytest.mark.usefixtures("runs")
async def test_totals_per_day_in_the_callers_time_zone(alice_client: AsyncClient) -> None:
    response = await alice_client.get(f"/api/reports?{RANGE}&group_by=day")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["time_zone"] == "Europe/Paris"
    assert body["group_by"] == ["day"]
    assert [(row["day"], row["seconds"]) for row in body["rows"]] == [
        ("2026-02-02", 3600.0),
        ("2026-02-03", 3600.0),
    ]
    assert body["total"] == {"microseconds": 7200 * 10**6, "seconds": 7200.0, "duration": "2:00:00"}
    assert "project" not in body["rows"][0]


@pytest.mark.usefixtures("runs")
async def test_groups_repeated_or_comma_separated(staff_client: AsyncClient) -> None:
    repeated = await staff_client.get(f"/api/reports?{RANGE}&group_by=user&group_by=project")
    commas = await staff_client.get(f"/api/reports?{RANGE}&group_by=user,project")

    assert repeated.json()["rows"] == commas.json()["rows"]
    assert [(row["user"], row["project"], row["seconds"]) for row in commas.json()["rows"]] == [
        ("alice", "acme", 7200.0),
        ("bob", "acme", 10800.0),
    ]


@pytest.mark.usefixtures("runs")
async def test_without_a_user_a_person_sees_their_own_time_only(bob_client: AsyncClient) -> None:
    response = await bob_client.get(f"/api/reports?{RANGE}&group_by=user")

    assert [row["user"] for row in response.json()["rows"]] == ["bob"]


@pytest.mark.usefixtures("runs")
async def test_someone_elses_report_needs_view_timesheet(
    bob_client: AsyncClient,
    staff_client: AsyncClient,
    make_user: Callable[..., User],
    client_for: Callable[[User], AsyncClient],
) -> None:
    bare = await sync_to_async(make_user)("stan", is_staff=True)
    bare_client = await sync_to_async(client_for)(bare)

    refused = await bob_client.get(f"/api/reports?{RANGE}&user=alice")
    bare_staff = await bare_client.get(f"/api/reports?{RANGE}&user=alice")
    allowed = await staff_client.get(f"/api/reports?{RANGE}&user=alice")

    assert refused.status_code == bare_staff.status_code == 403
    assert "view_timesheet" in refused.json()["detail"]
    assert allowed.status_code == 200
    assert allowed.json()["total"]["seconds"] == 7200.0


@pytest.mark.usefixtures("runs")
async def test_the_project_filter(staff_client: AsyncClient, project: Any) -> None:
    mine = await staff_client.get(f"/api/reports?{RANGE}&project={project.pk}")
    none = await staff_client.get(f"/api/reports?{RANGE}&project={project.pk + 1}")

    assert mine.json()["total"]["seconds"] == 18000.0
    assert none.json()["total"]["seconds"] == 0.0


@pytest.mark.usefixtures("runs")
async def test_csv_download(alice_client: AsyncClient) -> None:
    response = await alice_client.get(f"/api/reports?{RANGE}&group_by=day&format=csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        'attachment; filename="report-2026-02-01-to-2026-02-28.csv"'
    )
    rows = list(csv.reader(io.StringIO((await content(response)).decode(), newline="")))
    assert rows == [
        ["day", "seconds", "duration"],
        ["2026-02-02", "3600.000000", "1:00:00"],
        ["2026-02-03", "3600.000000", "1:00:00"],
        ["total", "7200.000000", "2:00:00"],
    ]


@pytest.mark.usefixtures("runs")
async def test_xlsx_download(alice_client: AsyncClient) -> None:
    response = await alice_client.get(f"/api/reports?{RANGE}&group_by=day&format=xlsx")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.openxmlformats")
    assert response["Content-Disposition"].endswith('.xlsx"')
    sheet = load_workbook(io.BytesIO(await content(response)))["Report"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[-1][:2] == ("total", 7200.0)
    assert rows[-1][2] == timedelta(hours=2)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=2026-02-10&to=2026-02-01", "comes before the first"),
        ("from=2026-01-01&to=2027-01-02", "at most 366 days"),
        (f"{RANGE}&group_by=month", "month is not one of the available choices"),
        (f"{RANGE}&group_by=day,yearly", "yearly is not one of the available choices"),
        ("from=2026-02-30&to=2026-03-01", "Invalid request: query.from"),
        ("from=yesterday&to=2026-03-01", "Invalid request: query.from"),
        ("to=2026-03-01", "Invalid request: query.from"),
        ("from=0001-01-01&to=0001-01-02", "Give a day from 1900-01-01"),
        (f"{RANGE}&format=pdf", "Invalid request: query.format"),
        (f"{RANGE}&user=nobody-here", "No user named 'nobody-here'"),
    ],
)
async def test_bad_input_answers_422_with_a_message(
    staff_client: AsyncClient, query: str, message: str
) -> None:
    response = await staff_client.get(f"/api/reports?{query}")

    assert response.status_code == 422, response.content
    assert message in response.json()["detail"], response.json()


async def test_a_year_and_a_leap_day_is_allowed(alice_client: AsyncClient) -> None:
    response = await alice_client.get("/api/reports?from=2028-01-01&to=2028-12-31")

    assert response.status_code == 200


async def test_reports_need_credentials() -> None:
    response = await AsyncClient().get(f"/api/reports?{RANGE}")

    assert response.status_code == 401


@pytest.mark.usefixtures("runs")
async def test_the_pages_links_work_with_the_session(alice: User) -> None:
    client = AsyncClient()
    await client.aforce_login(alice)

    response = await client.get(f"/api/reports?{RANGE}&format=csv")

    assert response.status_code == 200
    assert (await content(response)).decode().splitlines()[-1] == "7200.000000,2:00:00"
