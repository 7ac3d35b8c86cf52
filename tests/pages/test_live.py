"""Pages that update themselves: a change made over the API appears on an open page within two
seconds, without a reload — My time, the admin's timesheet list and the staff dashboard.

Each page follows the event stream (``pages/static/pages/live.js``); the API request is made by
another client, as from another device.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect, sync_playwright

from tests.pages.test_browser import CHROMIUM, CHROMIUM_ARGS, PASSWORD, WAIT_MS
from tests.processes import serving
from timesheets.models import Project
from timesheets.services import api_token_create

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WITHIN_MS = 2_000  # milliseconds from the API's answer to the change on the open page


@pytest.fixture
def server(db: None) -> Iterator[str]:
    with serving() as base:
        yield base


@pytest.fixture
def people(db: None) -> tuple[str, str, int]:
    """A person's API token (their other device), the staff member who watches, a project."""
    dana = User.objects.create_user(username="dana", password=PASSWORD)
    User.objects.create_superuser(username="boss", password=PASSWORD, email="boss@example.com")
    project = Project.objects.create(code="acme", designation="ACME rollout")
    token = api_token_create(user=dana, name="phone", expires_at=None, now=timezone.now())
    return token.secret, "boss", project.pk


@pytest.fixture
def page(tmp_path: object) -> Iterator[Page]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's `chromium` package "
            "(apt-get install chromium) to run the browser tests."
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.set_default_timeout(WAIT_MS)
            yield page
        finally:
            browser.close()


def sign_in(page: Page, base: str, username: str, path: str) -> None:
    page.goto(f"{base}/accounts/login/?next={path}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(re.escape(path) + "$"))
    following(page)


def following(page: Page) -> None:
    """The page's stream is open: what happens from now on reaches it."""
    expect(page.locator("body[data-live-connected=true]")).to_have_count(1)


def api(base: str, token: str, method: str, path: str, **body: object) -> httpx.Response:
    response = httpx.request(
        method,
        f"{base}/api{path}",
        json=body or None,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.is_success, response.text
    return response


def test_my_time_follows_changes_made_on_another_device(
    server: str, people: tuple[str, str, int], page: Page
) -> None:
    token, _, project = people
    sign_in(page, server, "dana", "/")
    expect(page.get_by_text("No timer is running.")).to_be_visible()

    started = api(
        server,
        token,
        "POST",
        "/timesheets",
        project=project,
        description="From the phone",
        start=True,
    )
    sent = time.monotonic()
    expect(page.locator(".running")).to_contain_text("From the phone", timeout=WITHIN_MS)
    print(f"\nMy time showed the start {time.monotonic() - sent:.3f} s after the API answered")  # noqa: T201
    timer = page.locator(".running .timer")
    first = timer.inner_text()
    expect(timer).not_to_have_text(first)  # the swapped-in timer ticks

    api(server, token, "POST", f"/timesheets/{started.json()['id']}/stop")
    expect(page.get_by_text("No timer is running.")).to_be_visible(timeout=WITHIN_MS)


def test_the_admin_list_follows_changes(
    server: str, people: tuple[str, str, int], page: Page
) -> None:
    token, staff, project = people
    sign_in(page, server, staff, "/admin/timesheets/timesheet/")

    api(
        server,
        token,
        "POST",
        "/timesheets",
        project=project,
        description="Seen by staff",
        start=True,
    )
    row = page.locator("#result_list tbody tr", has_text="Seen by staff")
    expect(row).to_have_count(1, timeout=WITHIN_MS)
    expect(row).to_contain_text("running", ignore_case=True)
    expect(page.locator(".filtered-total")).to_contain_text("1 timesheet")


def test_the_dashboard_follows_timers_and_shows_the_runners(
    server: str, people: tuple[str, str, int], page: Page
) -> None:
    token, staff, project = people
    sign_in(page, server, staff, "/dashboard/")
    expect(page.locator("tr.runner-healthy")).to_have_count(1)  # the web process's runner

    started = api(
        server,
        token,
        "POST",
        "/timesheets",
        project=project,
        description="On the board",
        start=True,
    )
    running = page.locator(f"#running-{started.json()['id']}")
    expect(running).to_contain_text("dana", timeout=WITHIN_MS)
    expect(page.locator(".project-total")).to_contain_text("acme")

    api(server, token, "POST", f"/timesheets/{started.json()['id']}/stop")
    expect(running).to_have_count(0, timeout=WITHIN_MS)
