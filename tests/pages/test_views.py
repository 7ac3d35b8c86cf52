"""The pages of a signed-in person: what they show, what they change, what they refuse.

Times are the real clock's (the pages pass no ``now``): each test sets its person's time zone
so that the local day is around noon, and records time in the last hour, so that "today" is
unambiguous whatever the hour the tests run at.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from django.utils import timezone

from timesheets.models import ApiToken, Correction, Profile, Project, Segment, Timesheet
from timesheets.services import (
    segment_add,
    timesheet_create,
    timesheet_start,
    timesheet_stop,
    timesheet_stop_forgotten,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settings_limits")]

FORMAT = "%Y-%m-%dT%H:%M:%S"  # what the pages' date-and-time inputs send


def noon_zone() -> str:
    """A time zone where it is between 11:00 and 13:00 now (Etc/GMT-N is UTC+N)."""
    offset = (12 - datetime.now(UTC).hour + 12) % 24 - 12
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"


@pytest.fixture
def zone(alice: User) -> zoneinfo.ZoneInfo:
    name = noon_zone()
    Profile.objects.create(user=alice, time_zone=name)
    return zoneinfo.ZoneInfo(name)


@pytest.fixture
def web(alice: User, zone: zoneinfo.ZoneInfo) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def local(moment: datetime, zone: zoneinfo.ZoneInfo) -> str:
    return moment.astimezone(zone).strftime(FORMAT)


def ago(**delta: float) -> datetime:
    return timezone.now().replace(microsecond=0) - timedelta(**delta)


def past_entry(owner: User, project: Project, start: datetime, end: datetime) -> Timesheet:
    timesheet = timesheet_create(owner=owner, project=project, description="past work")
    segment_add(timesheet_id=timesheet.pk, started_at=start, ended_at=end, actor=owner)
    return timesheet


def state() -> tuple[Any, ...]:
    """Everything the pages can write: unchanged after a refused request."""
    return (
        list(Timesheet.objects.order_by("pk").values()),
        list(Segment.objects.order_by("pk").values()),
        Correction.objects.count(),
        list(ApiToken.objects.order_by("pk").values()),
        list(Profile.objects.order_by("pk").values()),
    )


def text(response: Any) -> str:
    return str(response.content.decode())


def live_seconds(html: str, element_id: str) -> float:
    match = re.search(
        rf'id="{element_id}"><span class="live" data-seconds="([0-9.]+)" data-rate="(\d+)"', html
    )
    assert match, f"no live duration with id {element_id}"
    return float(match[1])


# --- Signing in and out, passwords ---------------------------------------------------------

PAGES = [
    "/",
    "/entries/add",
    "/tokens/",
    "/account/",
    "/accounts/password/change/",
]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_asks_to_sign_in_first(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


def test_sign_in_leads_to_my_time_and_a_wrong_password_is_refused(
    client: Client, make_user: Callable[..., User]
) -> None:
    user = make_user("carol")
    user.set_password("a long pass phrase")
    user.save()
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert '<label for="id_username">' in text(page)

    wrong = client.post("/accounts/login/", {"username": "carol", "password": "wrong"})
    assert wrong.status_code == 200
    assert "Please enter a correct username and password" in text(wrong)
    assert "_auth_user_id" not in client.session

    right = client.post("/accounts/login/", {"username": "carol", "password": "a long pass phrase"})
    assert right.status_code == 302
    assert right["Location"] == "/"
    assert client.get("/").status_code == 200


def test_sign_out_is_a_post(web: Client) -> None:
    assert web.get("/accounts/logout/").status_code == 405
    response = web.post("/accounts/logout/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/"
    assert web.get("/").status_code == 302


def test_password_change_and_its_error(web: Client, alice: User) -> None:
    alice.set_password("first pass phrase")
    alice.save()
    web.force_login(alice)
    assert web.get("/accounts/password/change/").status_code == 200
    wrong = web.post(
        "/accounts/password/change/",
        {"old_password": "nope", "new_password1": "x", "new_password2": "y"},
    )
    assert wrong.status_code == 200
    assert "Your old password was entered incorrectly" in text(wrong)
    right = web.post(
        "/accounts/password/change/",
        {
            "old_password": "first pass phrase",
            "new_password1": "second pass phrase",
            "new_password2": "second pass phrase",
        },
    )
    assert right["Location"] == "/accounts/password/change/done/"
    alice.refresh_from_db()
    assert alice.check_password("second pass phrase")


def test_password_reset_by_e_mail(client: Client, alice: User) -> None:
    alice.email = "alice@example.com"
    alice.set_password("a forgotten pass phrase")  # accounts without one get no link
    alice.save()
    assert client.get("/accounts/password/reset/").status_code == 200
    sent = client.post("/accounts/password/reset/", {"email": "alice@example.com"})
    assert sent["Location"] == "/accounts/password/reset/sent/"
    assert len(mail.outbox) == 1
    link = re.search(r"http://testserver(/accounts/password/reset/\S+/)", str(mail.outbox[0].body))
    assert link
    form = client.get(link[1], follow=True)
    assert "Choose a new password" in text(form)
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "a fresh pass phrase", "new_password2": "a fresh pass phrase"},
    )
    assert done["Location"] == "/accounts/password/reset/complete/"
    alice.refresh_from_db()
    assert alice.check_password("a fresh pass phrase")
    # The link works once.
    assert "not valid any more" in text(client.get(link[1], follow=True))


# --- Navigation ----------------------------------------------------------------------------


def test_the_nav_links_every_page_and_admin_for_staff_only(
    web: Client, staff: User, project: Project
) -> None:
    page = text(web.get("/"))
    for href in ('href="/"', 'href="/reports/"', 'href="/tokens/"', 'href="/account/"'):
        assert href in page
    assert 'href="/admin/"' not in page
    assert re.search(r'<form[^>]*action="/accounts/logout/"[^>]*>.*?<button', page, re.S)
    staff_client = Client()
    staff_client.force_login(staff)
    assert 'href="/admin/"' in text(staff_client.get("/"))


def test_api_root_leads_to_the_docs_and_the_api_still_answers(client: Client) -> None:
    response = client.get("/api/")
    assert response.status_code == 302
    assert response["Location"] == "/api/docs"
    assert client.post("/api/").status_code == 405
    assert client.get("/api/docs").status_code == 200
    assert client.get("/api/openapi.json").status_code == 200
    assert client.get("/api/timesheets").status_code == 401


# --- My time -------------------------------------------------------------------------------


def test_my_time_without_a_project_says_so(web: Client) -> None:
    page = text(web.get("/"))
    assert "No timer is running." in page
    assert "There is no active project" in page


def test_start_and_stop_a_timer(web: Client, alice: User, project: Project) -> None:
    started = web.post("/timer/start", {"project": project.pk, "description": "Kick-off"})
    assert started.status_code == 302
    timesheet = Timesheet.objects.get(owner=alice)
    assert timesheet.status == Timesheet.Status.RUNNING
    assert timesheet.description == "Kick-off"
    page = text(web.get("/"))
    # The timer ticks in the browser: it runs (rate 1) from the value read at the DB clock.
    assert re.search(
        rf'id="timer-{timesheet.pk}"><span class="live" data-seconds="[0-9.]+" data-rate="1"',
        page,
    )
    assert "Kick-off" in page

    stopped = web.post(f"/entries/{timesheet.pk}/stop")
    assert stopped.status_code == 302
    timesheet.refresh_from_db()
    assert timesheet.status == Timesheet.Status.STOPPED
    assert "No timer is running." in text(web.get("/"))


def test_start_again_and_stop_from_the_entry_page_come_back_to_it(
    web: Client, alice: User, project: Project
) -> None:
    timesheet = past_entry(alice, project, ago(hours=2), ago(hours=1))
    back = {"back": "entry"}
    assert web.post(f"/entries/{timesheet.pk}/start", back)["Location"] == (
        f"/entries/{timesheet.pk}"
    )
    timesheet.refresh_from_db()
    assert timesheet.status == Timesheet.Status.RUNNING
    assert web.post(f"/entries/{timesheet.pk}/stop", back)["Location"] == (
        f"/entries/{timesheet.pk}"
    )
    timesheet.refresh_from_db()
    assert timesheet.status == Timesheet.Status.STOPPED
    assert timesheet.segments.count() == 2
    # Anything else leads to My time, never elsewhere.
    assert web.post(f"/entries/{timesheet.pk}/start", {"back": "//evil.example"})["Location"] == "/"


def test_starting_another_timer_stops_the_running_one_under_the_limit(
    web: Client, alice: User, project: Project
) -> None:
    web.post("/timer/start", {"project": project.pk, "description": "first"})
    web.post("/timer/start", {"project": project.pk, "description": "second"})
    running = Timesheet.objects.filter(owner=alice, status=Timesheet.Status.RUNNING)
    assert [t.description for t in running] == ["second"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"project": "", "description": "x"}, "This field is required."),
        ({"project": "999999", "description": "x"}, "Select a valid choice."),
        ({"project": "nope", "description": "x"}, "Select a valid choice."),
        ({"project": "{project}", "description": "x" * 501}, "at most 500 characters"),
        ({"project": "{archived}", "description": "x"}, "Select a valid choice."),
    ],
)
def test_a_refused_start_shows_why_and_changes_nothing(
    web: Client, project: Project, data: dict[str, str], message: str
) -> None:
    archived = Project.objects.create(code="old", designation="Old", is_active=False)
    data = {
        key: value.format(project=project.pk, archived=archived.pk) for key, value in data.items()
    }
    before = state()
    response = web.post("/timer/start", data)
    assert response.status_code == 400
    assert message in text(response)
    assert state() == before


def test_restarting_an_archived_project_s_entry_is_refused(
    web: Client, alice: User, project: Project
) -> None:
    timesheet = past_entry(alice, project, ago(hours=1), ago(minutes=30))
    Project.objects.filter(pk=project.pk).update(is_active=False)
    before = state()
    response = web.post(f"/entries/{timesheet.pk}/start", follow=True)
    assert "is archived" in text(response)
    assert state() == before


def test_totals_and_the_last_days_in_the_person_s_time_zone(
    web: Client, alice: User, project: Project, zone: zoneinfo.ZoneInfo
) -> None:
    start, end = ago(minutes=50), ago(minutes=20)
    past_entry(alice, project, start, end)
    # Two days ago: in the week's list, not today's total.
    two_days = ago(days=2, minutes=30)
    past_entry(alice, project, two_days, two_days + timedelta(minutes=10))
    page = text(web.get("/"))
    assert live_seconds(page, "today-total") == 30 * 60
    local_day = start.astimezone(zone).date()
    assert f'id="day-{local_day:%Y-%m-%d}"' in page
    assert f'id="day-{two_days.astimezone(zone).date():%Y-%m-%d}"' in page
    # The run is shown at its local time.
    assert f"{start.astimezone(zone):%H:%M}\u2013{end.astimezone(zone):%H:%M}" in page
    same_week = two_days.astimezone(zone).isocalendar()[:2] == local_day.isocalendar()[:2]
    assert live_seconds(page, "week-total") == (40 if same_week else 30) * 60


def test_a_running_timer_counts_in_today_s_total(
    web: Client, alice: User, project: Project
) -> None:
    timesheet = timesheet_create(owner=alice, project=project, description="now", start=True)
    page = text(web.get("/"))
    assert re.search(
        r'id="today-total"><span class="live" data-seconds="[0-9.]+" data-rate="1"', page
    )
    timesheet_stop(timesheet_id=timesheet.pk)
    assert 'data-rate="1"' not in text(web.get("/"))


# --- Adding a past entry -------------------------------------------------------------------


def test_add_a_past_entry_with_its_end(
    web: Client, alice: User, project: Project, zone: zoneinfo.ZoneInfo
) -> None:
    assert web.get("/entries/add").status_code == 200
    start, end = ago(hours=1), ago(minutes=15)
    response = web.post(
        "/entries/add",
        {
            "project": project.pk,
            "description": "Review",
            "started_at": local(start, zone),
            "ended_at": local(end, zone),
        },
    )
    timesheet = Timesheet.objects.get(owner=alice)
    assert response["Location"] == f"/entries/{timesheet.pk}"
    (segment,) = timesheet.segments.all()
    assert (segment.started_at, segment.ended_at) == (start, end)
    assert timesheet.imputed == end - start


def test_add_a_past_entry_with_its_duration(
    web: Client, alice: User, project: Project, zone: zoneinfo.ZoneInfo
) -> None:
    start = ago(hours=3)
    web.post(
        "/entries/add",
        {"project": project.pk, "started_at": local(start, zone), "duration": "1:30"},
    )
    (segment,) = Segment.objects.filter(owner=alice)
    assert segment.ended_at == start + timedelta(hours=1, minutes=30)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"started_at": "{start}"}, "Give either the end or the duration"),
        (
            {"started_at": "{start}", "ended_at": "{end}", "duration": "1:00"},
            "Give either the end or the duration",
        ),
        ({"started_at": "{end}", "ended_at": "{start}"}, "A run must end after it starts"),
        ({"started_at": "{start}", "duration": "5:00"}, "A run cannot lie in the future"),
        ({"started_at": "{start}", "duration": "soon"}, "Enter a duration as hours and minutes"),
        ({"started_at": "{start}", "duration": "0:00"}, "longer than zero"),
        ({"started_at": "{start}", "duration": "999:00"}, "31 days at most"),
        ({"started_at": "yesterday", "duration": "1:00"}, "Enter a valid date/time."),
        ({"started_at": "0001-01-01T00:00:00", "duration": "1:00"}, "between the years 1900"),
        ({"started_at": "9999-12-31T23:59:59", "duration": "1:00"}, "between the years 1900"),
        ({"started_at": "{overlap}", "duration": "1:00"}, "This run would overlap run"),
        ({"ended_at": "{end}"}, "This field is required."),
    ],
)
def test_a_refused_past_entry_shows_why_and_changes_nothing(
    web: Client,
    alice: User,
    project: Project,
    zone: zoneinfo.ZoneInfo,
    fields: dict[str, str],
    message: str,
) -> None:
    existing = ago(hours=10)
    past_entry(alice, project, existing, existing + timedelta(hours=1))
    values = {
        "start": local(ago(hours=2), zone),
        "end": local(ago(hours=1), zone),
        "overlap": local(existing + timedelta(minutes=30), zone),
    }
    data = {"project": str(project.pk)} | {k: v.format(**values) for k, v in fields.items()}
    before = state()
    response = web.post("/entries/add", data)
    assert response.status_code == 400
    assert message in text(response)
    assert state() == before


# --- An entry ------------------------------------------------------------------------------


@pytest.fixture
def entry(alice: User, project: Project) -> Timesheet:
    return past_entry(alice, project, ago(hours=3), ago(hours=2))


def test_the_entry_page_shows_its_runs_in_the_person_s_time_zone(
    web: Client, entry: Timesheet, zone: zoneinfo.ZoneInfo
) -> None:
    page = text(web.get(f"/entries/{entry.pk}"))
    (segment,) = entry.segments.all()
    assert f'value="{local(segment.started_at, zone)}"' in page
    assert f"Times are in your time zone, {zone.key}." in page
    assert live_seconds(page, "entry-total") == 3600
    # Its correction history: who, what, and the run in the person's time zone.
    assert "run added" in page
    assert "alice" in page
    assert f"{segment.started_at.astimezone(zone):%H:%M:%S}" in page


def test_change_a_run(web: Client, entry: Timesheet, zone: zoneinfo.ZoneInfo) -> None:
    (segment,) = entry.segments.all()
    new_start = segment.started_at - timedelta(minutes=30)
    response = web.post(
        f"/entries/{entry.pk}/runs/{segment.pk}",
        {
            f"run-{segment.pk}-started_at": local(new_start, zone),
            f"run-{segment.pk}-ended_at": local(segment.ended_at, zone),  # type: ignore[arg-type]
        },
    )
    assert response["Location"] == f"/entries/{entry.pk}"
    segment.refresh_from_db()
    entry.refresh_from_db()
    assert segment.started_at == new_start
    assert entry.imputed == timedelta(minutes=90)
    history = text(web.get(f"/entries/{entry.pk}"))
    assert "run changed" in history


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("{end}", "{start}", "A run must end after it starts"),
        ("{start}", "", "This field is required."),
        ("{start}", "{future}", "A run cannot lie in the future"),
        ("garbage", "{end}", "Enter a valid date/time."),
    ],
)
def test_a_refused_run_change_shows_why_and_changes_nothing(
    web: Client,
    entry: Timesheet,
    zone: zoneinfo.ZoneInfo,
    start: str,
    end: str,
    message: str,
) -> None:
    (segment,) = entry.segments.all()
    assert segment.ended_at is not None
    values = {
        "start": local(segment.started_at, zone),
        "end": local(segment.ended_at, zone),
        "future": local(ago(hours=-2), zone),
    }
    before = state()
    response = web.post(
        f"/entries/{entry.pk}/runs/{segment.pk}",
        {
            f"run-{segment.pk}-started_at": start.format(**values),
            f"run-{segment.pk}-ended_at": end.format(**values),
        },
    )
    assert response.status_code == 400
    assert message in text(response)
    assert state() == before


def test_add_a_run_and_its_overlap_is_refused(
    web: Client, entry: Timesheet, zone: zoneinfo.ZoneInfo
) -> None:
    start, end = ago(hours=5), ago(hours=4)
    web.post(
        f"/entries/{entry.pk}/runs/add",
        {"new-started_at": local(start, zone), "new-ended_at": local(end, zone)},
    )
    assert entry.segments.count() == 2
    before = state()
    response = web.post(
        f"/entries/{entry.pk}/runs/add",
        {
            "new-started_at": local(start + timedelta(minutes=10), zone),
            "new-ended_at": local(end, zone),
        },
    )
    assert response.status_code == 400
    assert "This run would overlap run" in text(response)
    assert state() == before


def test_delete_a_run_and_a_running_one_is_refused(
    web: Client, alice: User, entry: Timesheet, project: Project
) -> None:
    (segment,) = entry.segments.all()
    web.post(f"/entries/{entry.pk}/runs/{segment.pk}/delete")
    entry.refresh_from_db()
    assert entry.segments.count() == 0
    assert entry.imputed == timedelta(0)

    running = timesheet_create(owner=alice, project=project, description="now", start=True)
    (open_run,) = running.segments.all()
    before = state()
    response = web.post(f"/entries/{running.pk}/runs/{open_run.pk}/delete")
    assert response.status_code == 400
    assert "stop the timer first" in text(response)
    assert state() == before


def test_the_start_of_a_running_run_can_move(
    web: Client, alice: User, project: Project, zone: zoneinfo.ZoneInfo
) -> None:
    running = timesheet_create(owner=alice, project=project, description="now", start=True)
    (open_run,) = running.segments.all()
    page = text(web.get(f"/entries/{running.pk}"))
    assert f'name="run-{open_run.pk}-ended_at"' not in page
    earlier = open_run.started_at.replace(microsecond=0) - timedelta(minutes=10)
    web.post(
        f"/entries/{running.pk}/runs/{open_run.pk}",
        {f"run-{open_run.pk}-started_at": local(earlier, zone)},
    )
    open_run.refresh_from_db()
    assert open_run.started_at == earlier
    assert open_run.ended_at is None


def test_describe_an_entry_and_a_too_long_description_is_refused(
    web: Client, entry: Timesheet
) -> None:
    web.post(f"/entries/{entry.pk}/describe", {"description": "Kick-off meeting"})
    entry.refresh_from_db()
    assert entry.description == "Kick-off meeting"
    before = state()
    response = web.post(f"/entries/{entry.pk}/describe", {"description": "x" * 501})
    assert response.status_code == 400
    assert "at most 500 characters" in text(response)
    assert state() == before


def test_delete_an_entry(web: Client, entry: Timesheet) -> None:
    response = web.post(f"/entries/{entry.pk}/delete")
    assert response["Location"] == "/"
    assert not Timesheet.objects.filter(pk=entry.pk).exists()
    assert Correction.objects.filter(action=Correction.Action.TIMESHEET_DELETED).count() == 1


def test_review_an_auto_stopped_entry(
    web: Client, alice: User, project: Project, settings: Any
) -> None:
    settings.TIMESHEETS_MAX_RUNNING_HOURS = 1
    timesheet = timesheet_create(owner=alice, project=project, description="forgotten")
    timesheet_start(timesheet_id=timesheet.pk, now=ago(hours=3))
    assert timesheet_stop_forgotten() == 1
    timesheet.refresh_from_db()
    assert timesheet.auto_stopped
    page = text(web.get(f"/entries/{timesheet.pk}"))
    assert "Mark reviewed" in page
    web.post(f"/entries/{timesheet.pk}/review")
    timesheet.refresh_from_db()
    assert not timesheet.auto_stopped
    page = text(web.get(f"/entries/{timesheet.pk}"))
    assert "Mark reviewed" not in page
    assert "reviewed after an automatic stop" in page


def test_other_people_s_entries_are_not_found(
    web: Client, bob: User, project: Project, alice: User
) -> None:
    theirs = past_entry(bob, project, ago(hours=3), ago(hours=2))
    (segment,) = theirs.segments.all()
    mine = past_entry(alice, project, ago(hours=5), ago(hours=4))
    before = state()
    assert web.get(f"/entries/{theirs.pk}").status_code == 404
    for action in ("start", "stop", "describe", "delete", "review", "runs/add"):
        assert web.post(f"/entries/{theirs.pk}/{action}").status_code == 404, action
    assert web.post(f"/entries/{theirs.pk}/runs/{segment.pk}").status_code == 404
    assert web.post(f"/entries/{theirs.pk}/runs/{segment.pk}/delete").status_code == 404
    # Their run through my entry's address.
    assert web.post(f"/entries/{mine.pk}/runs/{segment.pk}").status_code == 404
    assert web.post(f"/entries/{mine.pk}/runs/{segment.pk}/delete").status_code == 404
    assert state() == before
    page = text(web.get("/"))
    assert f"/entries/{mine.pk}" in page
    assert f"/entries/{theirs.pk}" not in page


def test_unknown_entries_are_not_found(web: Client) -> None:
    assert web.get("/entries/99999999999999999999").status_code == 404
    assert web.post("/entries/99999999999999999999/stop").status_code == 404


# --- Tokens --------------------------------------------------------------------------------


def test_create_a_token_shows_its_secret_once_and_nowhere_else(web: Client, alice: User) -> None:
    assert web.get("/tokens/").status_code == 200
    response = web.post("/tokens/", {"name": "laptop"})
    assert response.status_code == 200
    secret = re.search(r'id="issued-secret">(tsk_[^<]+)<', text(response))
    assert secret
    token = ApiToken.objects.get(user=alice)
    assert token.name == "laptop"
    assert "no-store" in response["Cache-Control"]
    for cookie in [*response.cookies.values(), *web.cookies.values()]:
        assert secret[1] not in cookie.value
    assert secret[1] not in str(dict(web.session))
    later = text(web.get("/tokens/"))
    assert secret[1] not in later
    assert f"{token.prefix}…" in later
    # It works on the API.
    assert web.get("/api/timesheets", headers={"Authorization": f"Bearer {secret[1]}"})


def test_a_token_s_expiry_must_lie_ahead(web: Client, zone: zoneinfo.ZoneInfo) -> None:
    before = state()
    response = web.post("/tokens/", {"name": "old", "expires_at": local(ago(hours=1), zone)})
    assert response.status_code == 400
    assert "The expiry must be in the future." in text(response)
    assert "issued-secret" not in text(response)
    assert state() == before


def test_revoke_a_token_and_not_another_person_s(
    web: Client, alice: User, bob: User, token_for: Callable[[User], str]
) -> None:
    token_for(alice)
    token_for(bob)
    mine, theirs = ApiToken.objects.get(user=alice), ApiToken.objects.get(user=bob)
    assert web.post(f"/tokens/{mine.pk}/revoke")["Location"] == "/tokens/"
    mine.refresh_from_db()
    assert mine.expires_at is not None
    assert mine.expires_at <= timezone.now()
    assert "(expired)" in text(web.get("/tokens/"))
    before = state()
    assert web.post(f"/tokens/{theirs.pk}/revoke").status_code == 404
    assert state() == before


# --- Account -------------------------------------------------------------------------------


def test_choose_a_time_zone(web: Client, alice: User) -> None:
    page = text(web.get("/account/"))
    assert 'href="/accounts/password/change/"' in page
    assert '<option value="Asia/Tokyo">' in page
    web.post("/account/", {"time_zone": "Asia/Tokyo"})
    assert Profile.objects.get(user=alice).time_zone == "Asia/Tokyo"
    assert 'id="current-zone">Asia/Tokyo<' in text(web.get("/account/"))
    web.post("/account/", {"time_zone": ""})
    assert Profile.objects.get(user=alice).time_zone == ""


def test_an_unknown_time_zone_is_refused(web: Client) -> None:
    before = state()
    response = web.post("/account/", {"time_zone": "Mars/Olympus_Mons"})
    assert response.status_code == 400
    assert "Select a valid choice." in text(response)
    assert state() == before


def test_a_person_without_a_profile_sees_the_service_s_time_zone(
    client: Client, bob: User, settings: Any
) -> None:
    client.force_login(bob)
    assert f'id="current-zone">{settings.TIME_ZONE}<' in text(client.get("/account/"))


# --- CSRF ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/timer/start", "/entries/add", "/tokens/", "/account/", "/accounts/logout/"]
)
def test_forms_need_their_csrf_token(alice: User, project: Project, path: str) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    before = state()
    response = client.post(path, {"project": project.pk, "name": "x", "time_zone": "UTC"})
    assert response.status_code == 403
    assert state() == before


def test_forms_with_their_csrf_token_pass(alice: User, project: Project) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    page = text(client.get("/"))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token
    response = client.post("/timer/start", {"project": project.pk, "csrfmiddlewaretoken": token[1]})
    assert response.status_code == 302
