"""The pages in a real browser (Debian's Chromium, driven by Playwright) against ``serve``.

A person who is not staff signs in, starts a timer and sees it tick, stops it, adds a past
entry, changes its run, and sees the day's total change: on a laptop screen and on a phone's.
On failure, a screenshot of the page is saved under the test's temporary directory.
"""

from __future__ import annotations

import csv
import io
import re
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect, sync_playwright

from tests.pages.test_views import noon_zone
from tests.processes import serving
from timesheets.models import Profile, Project

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000  # milliseconds the browser gets for each step on a loaded machine
PASSWORD = "a long browser pass phrase"


@pytest.fixture
def person(db: None) -> tuple[str, zoneinfo.ZoneInfo]:
    user = User.objects.create_user(username="dana", password=PASSWORD)
    # Around noon in the person's time zone: the entries of the test fall on today.
    zone = noon_zone()
    Profile.objects.create(user=user, time_zone=zone)
    Project.objects.create(code="acme", designation="ACME rollout")
    return user.username, zoneinfo.ZoneInfo(zone)


@pytest.fixture
def server(person: tuple[str, zoneinfo.ZoneInfo]) -> Iterator[str]:
    with serving() as base:
        yield base


def seconds(text: str) -> int:
    hours, minutes, secs = (int(part) for part in text.strip().split(":"))
    return hours * 3600 + minutes * 60 + secs


def assert_fits(page: Page) -> None:
    """Nothing is wider than the screen: no sideways scrolling, on a phone either."""
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{page.url} is {overflow} px wider than the screen"


def scenario(page: Page, base: str, username: str, zone: zoneinfo.ZoneInfo) -> None:
    page.goto(f"{base}/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="My time", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)

    # Start a timer and watch it tick.
    page.get_by_label("Project").select_option(label="acme · ACME rollout")
    page.get_by_label("Description").fill("Browser run")
    page.get_by_role("button", name="Start", exact=True).click()
    timer = page.locator(".running .timer")
    expect(timer).to_be_visible()
    first = timer.inner_text()
    expect(timer).not_to_have_text(first, timeout=WAIT_MS)

    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_text("No timer is running.")).to_be_visible()
    assert_fits(page)
    today = page.locator("#today-total")
    before = seconds(today.inner_text())

    # A past entry of half an hour, three hours ago in the person's time zone.
    start = (datetime.now(UTC) - timedelta(hours=3)).astimezone(zone).replace(second=0)
    page.get_by_role("link", name="Add a past entry").click()
    page.get_by_label("Project").select_option(label="acme · ACME rollout")
    page.get_by_label("Description").fill("Earlier work")
    page.get_by_label("Start").fill(start.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Duration").fill("0:30")
    page.get_by_role("button", name="Add the entry").click()
    expect(page.get_by_role("heading", name="Earlier work", level=1)).to_be_visible()
    expect(page.locator("#entry-total")).to_have_text("0:30:00")

    # Edit it: its run starts a quarter of an hour earlier.
    earlier = start - timedelta(minutes=15)
    run = page.get_by_role("form", name="Change run 1")
    run.get_by_label("Start").fill(earlier.strftime("%Y-%m-%dT%H:%M"))
    run.get_by_role("button", name="Save run 1").click()
    expect(page.locator("#entry-total")).to_have_text("0:45:00")
    expect(page.get_by_role("cell", name="run changed")).to_be_visible()
    assert_fits(page)

    # The day's total has grown by the entry's 45 minutes.
    page.get_by_role("link", name="My time").click()
    expected = f"{(before + 45 * 60) // 3600}:{(before + 45 * 60) % 3600 // 60:02d}:"
    expect(page.locator("#today-total")).to_contain_text(expected)
    assert seconds(page.locator("#today-total").inner_text()) == before + 45 * 60
    day = page.locator(f"#day-{start.date():%Y-%m-%d} .day-total")
    assert seconds(day.inner_text()) == before + 45 * 60
    expect(page.get_by_role("link", name="Earlier work")).to_be_visible()
    assert_fits(page)

    # The report of today, downloaded as CSV: its total is the day's.
    page.get_by_role("link", name="Reports").click()
    page.get_by_label("From").fill(f"{start.date():%Y-%m-%d}")
    page.get_by_label("to", exact=True).fill(f"{start.date():%Y-%m-%d}")
    page.get_by_role("button", name="Show").click()
    link = page.get_by_role("link", name="CSV").get_attribute("href")
    assert link is not None
    answer = page.request.get(urljoin(page.url, link))  # with the page's session
    assert answer.ok, answer.text()
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(answer.text(), newline="")))
    assert rows[-1][0] == "total", rows
    assert int(float(rows[-1][-2])) == before + 45 * 60, rows  # the page shows whole seconds
    assert rows[-1][-1] == page.locator("#day-total, tfoot strong").last.inner_text()
    assert_fits(page)

    # A token: its secret on the page, which still fits the screen.
    page.get_by_role("link", name="Tokens").click()
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create the token").click()
    expect(page.locator("#issued-secret")).to_contain_text("tsk_")
    assert_fits(page)
    page.get_by_role("link", name="Account").click()
    expect(page.locator("#current-zone")).to_have_text(zone.key)
    assert_fits(page)


@pytest.mark.parametrize(
    ("width", "height"), [pytest.param(1366, 768, id="laptop"), pytest.param(375, 667, id="phone")]
)
def test_a_person_records_time_in_the_browser(
    server: str,
    person: tuple[str, zoneinfo.ZoneInfo],
    tmp_path: Path,
    width: int,
    height: int,
) -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's `chromium` package "
            "(apt-get install chromium) to run the browser tests."
        )
    username, zone = person
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(WAIT_MS)
            try:
                scenario(page, server, username, zone)
            except BaseException:
                shots = tmp_path / "screenshots"
                shots.mkdir(exist_ok=True)
                shot = shots / f"failure-{width}x{height}.png"
                page.screenshot(path=str(shot), full_page=True)
                print(f"screenshot of the failing page: {shot}")  # noqa: T201
                raise
        finally:
            browser.close()
