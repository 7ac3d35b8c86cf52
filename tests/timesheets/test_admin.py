from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.contrib.messages.storage.cookie import CookieStorage
from django.contrib.staticfiles import finders
from django.db import connection
from django.templatetags.static import static
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.conftest import T0, at
from tests.invariants import assert_invariants, segments_total
from timesheets.admin import SegmentInline, format_age, format_duration
from timesheets.models import ApiToken, Project, Segment, Timesheet
from timesheets.services import (
    api_token_create,
    api_token_digest,
    project_create,
    timesheet_accrue_running,
    timesheet_create,
    timesheet_start,
    timesheet_stop,
    timesheet_stop_forgotten,
)

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settings_limits")]

RUNNING = Timesheet.Status.RUNNING
STOPPED = Timesheet.Status.STOPPED
TIMESHEETS = reverse("admin:timesheets_timesheet_changelist")
SCRIPT = "timesheets/admin/live.js"


@pytest.fixture
def root(db: None) -> User:
    user: User = User.objects.create_superuser(
        username="root", password=None, email="root@example.com"
    )
    return user


@pytest.fixture
def staff_client(root: User) -> Client:
    client = Client()
    client.force_login(root)
    return client


def new(owner: User, project: Project, description: str = "work") -> Timesheet:
    return timesheet_create(owner=owner, project=project, description=description, now=T0)


def running_since(owner: User, project: Project, start: datetime) -> Timesheet:
    return timesheet_start(timesheet_id=new(owner, project).pk, now=start)


def fresh(timesheet: Timesheet) -> Timesheet:
    return Timesheet.objects.get(pk=timesheet.pk)


def rows(response: Response) -> dict[int, dict[str, str]]:
    """The changelist's rows: each timesheet's id mapped to its cells' inner HTML by column."""
    assert response.status_code == 200
    html = response.content.decode()
    table: dict[int, dict[str, str]] = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.S):
        pk = re.search(r'name="_selected_action" value="(\d+)"', row)
        if pk is None:
            continue
        cells = re.findall(r'<t[dh] class="field-(\w+)[^"]*">(.*?)</t[dh]>', row, re.S)
        table[int(pk.group(1))] = dict(cells)
    return table


def live(cell: str) -> dict[str, str]:
    """The attributes and text of a cell's ``ts-live`` span."""
    span = re.fullmatch(r'<span class="ts-live"((?: [\w-]+="[^"]*")*)>([^<]*)</span>', cell)
    assert span is not None, f"no ts-live markup in {cell!r}"
    attributes = dict(re.findall(r' ([\w-]+)="([^"]*)"', span.group(1)))
    return {**attributes, "text": span.group(2)}


def page_form(client: Client, url: str) -> dict[str, str]:
    """What a browser posts back from the page's hidden inputs (the inline's management form)."""
    html = client.get(url).content.decode()
    hidden = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html)
    return {name: value for name, value in hidden if name != "csrfmiddlewaretoken"}


def sent(response: Response) -> list[tuple[int, str]]:
    return [(m.level, m.message) for m in get_messages(response.wsgi_request)]


def act(client: Client, action: str, *timesheets: Timesheet) -> Response:
    response = client.post(
        TIMESHEETS,
        {"action": action, "_selected_action": [str(t.pk) for t in timesheets]},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    return response


class TestFormatting:
    @pytest.mark.parametrize(
        ("seconds", "text"),
        [
            (0, "0:00:00"),
            (59.999, "0:00:59"),
            (3661.9, "1:01:01"),
            (86399.5, "23:59:59"),
            (90000, "25:00:00"),
            (1_000_000, "277:46:40"),
            (-0.5, "0:00:00"),
        ],
    )
    def test_duration_is_hours_minutes_seconds(self, seconds: float, text: str) -> None:
        assert format_duration(seconds) == text

    @pytest.mark.parametrize(
        ("seconds", "text"),
        [(0.2, "0 s ago"), (4.7, "4 s ago"), (125, "2 min 5 s ago"), (7260, "2 h 1 min ago")],
    )
    def test_age(self, seconds: float, text: str) -> None:
        assert format_age(seconds) == text

    def test_the_script_formats_like_the_server(self) -> None:
        path = finders.find(SCRIPT)
        assert isinstance(path, str)
        script = Path(path).read_text()
        # The same cut-off and padding rules as format_duration.
        assert "Math.floor(seconds)" in script
        assert 'padStart(2, "0")' in script
        assert '.ts-live[data-running="1"]' in script


class TestChangelist:
    def test_running_rows_tick_and_stopped_rows_are_static(
        self, staff_client: Client, alice: User, bob: User, project: Project
    ) -> None:
        stopped = timesheet_start(timesheet_id=new(alice, project).pk, now=at(0))
        timesheet_stop(timesheet_id=stopped.pk, now=at(3661.9))
        start = timezone.now() - timedelta(seconds=90)
        running = running_since(bob, project, start)
        watermark = start + timedelta(seconds=60)
        timesheet_accrue_running(now=watermark)

        before = timezone.now()
        response = staff_client.get(TIMESHEETS)
        after = timezone.now()

        table = rows(response)
        assert live(table[stopped.pk]["accumulated"]) == {
            "data-seconds": "3661.900000",
            "data-running": "0",
            "text": "1:01:01",
        }
        assert table[stopped.pk]["checkpoint_age"] == "—"
        cell = live(table[running.pk]["accumulated"])
        seconds = float(cell["data-seconds"])
        assert (before - start).total_seconds() <= seconds <= (after - start).total_seconds()
        assert cell["text"] == format_duration(seconds)
        assert cell["data-running"] == "1"
        assert cell["data-max-seconds"] == f"{12 * 3600:.6f}"
        assert table[running.pk]["checkpoint_age"] in {
            format_age((before - watermark).total_seconds()),
            format_age((after - watermark).total_seconds()),
        }
        assert table[running.pk]["status"] == "running"
        assert table[stopped.pk]["status"] == "stopped"
        assert f'<script src="{static(SCRIPT)}"' in response.content.decode()

    def test_hours_go_past_a_day(
        self, staff_client: Client, alice: User, project: Project, settings: Any
    ) -> None:
        settings.TIMESHEETS_MAX_RUNNING_HOURS = 0
        timesheet = timesheet_start(timesheet_id=new(alice, project).pk, now=at(0))
        timesheet_stop(timesheet_id=timesheet.pk, now=at(90000))

        cell = live(rows(staff_client.get(TIMESHEETS))[timesheet.pk]["accumulated"])

        assert cell["text"] == "25:00:00"

    def test_a_run_at_its_maximum_length_stops_ticking(
        self, staff_client: Client, alice: User, project: Project, settings: Any
    ) -> None:
        settings.TIMESHEETS_MAX_RUNNING_HOURS = 1
        timesheet = running_since(alice, project, timezone.now() - timedelta(hours=2))

        cell = live(rows(staff_client.get(TIMESHEETS))[timesheet.pk]["accumulated"])

        assert cell == {
            "data-seconds": "3600.000000",
            "data-running": "0",
            "data-max-seconds": "3600.000000",
            "text": "1:00:00",
        }

    def test_every_row_of_a_page_is_computed_at_one_instant(
        self, staff_client: Client, make_user: Callable[..., User], project: Project
    ) -> None:
        start = timezone.now() - timedelta(seconds=30)
        timesheets = [running_since(make_user(f"user{i}"), project, start) for i in range(3)]

        table = rows(staff_client.get(TIMESHEETS))

        values = {live(table[t.pk]["accumulated"])["data-seconds"] for t in timesheets}
        assert len(values) == 1

    def test_queries_do_not_grow_with_rows(
        self,
        staff_client: Client,
        make_user: Callable[..., User],
        settings: Any,
    ) -> None:
        settings.TIMESHEETS_MAX_RUNNING_PER_USER = 0

        def add_rows(count: int, offset: int) -> None:
            for i in range(offset, offset + count):
                owner = make_user(f"user{i}")
                project = project_create(code=f"p{i}", designation=f"Project {i}", now=T0)
                timesheet = timesheet_start(timesheet_id=new(owner, project).pk, now=at(i))
                if i % 2:
                    timesheet_stop(timesheet_id=timesheet.pk, now=at(i + 5))

        add_rows(2, 0)
        with CaptureQueriesContext(connection) as few:
            assert len(rows(staff_client.get(TIMESHEETS))) == 2
        add_rows(10, 2)
        with CaptureQueriesContext(connection) as many:
            assert len(rows(staff_client.get(TIMESHEETS))) == 12

        assert len(many.captured_queries) == len(few.captured_queries)

    def test_filters(
        self, staff_client: Client, alice: User, bob: User, project: Project, settings: Any
    ) -> None:
        other = project_create(code="other", designation="Other work", now=T0)
        stopped = new(alice, project)
        running = running_since(bob, other, timezone.now())
        forgotten = running_since(alice, other, at(0))
        settings.TIMESHEETS_MAX_RUNNING_HOURS = 1
        assert timesheet_stop_forgotten(now=at(7200)) == 1

        def shown(**query: Any) -> set[int]:
            return set(rows(staff_client.get(TIMESHEETS, query)))

        assert shown() == {stopped.pk, running.pk, forgotten.pk}
        assert shown(status__exact="running") == {running.pk}
        assert shown(status__exact="stopped") == {stopped.pk, forgotten.pk}
        assert shown(project__id__exact=other.pk) == {running.pk, forgotten.pk}
        assert shown(owner__id__exact=alice.pk) == {stopped.pk, forgotten.pk}
        assert shown(auto_stopped__exact="1") == {forgotten.pk}
        assert shown(auto_stopped__exact="0") == {stopped.pk, running.pk}

    def test_search(self, staff_client: Client, alice: User, bob: User, project: Project) -> None:
        other = project_create(code="zeta", designation="Harbour survey", now=T0)
        first = new(alice, project, "Quarterly report")
        second = new(bob, other, "Calls")

        def found(q: str) -> set[int]:
            return set(rows(staff_client.get(TIMESHEETS, {"q": q})))

        assert found("quarterly") == {first.pk}
        assert found("zeta") == {second.pk}
        assert found("harbour") == {second.pk}
        assert found("alice") == {first.pk}
        assert found("nothing-like-this") == set()

    def test_the_site_is_named(self, staff_client: Client) -> None:
        response = staff_client.get(reverse("admin:index"))
        assert response.status_code == 200
        assert response.context["site_header"] == "Timesheets"
        assert response.context["site_title"] == "Timesheets"
        assert "<title>Administration | Timesheets</title>" in response.content.decode()


class TestActions:
    def test_start_goes_through_the_service(
        self, staff_client: Client, alice: User, bob: User, project: Project
    ) -> None:
        first, second = new(alice, project), new(bob, project)
        before = timezone.now()

        response = act(staff_client, "start_selected", first, second)

        after = timezone.now()
        assert sent(response) == [(messages.SUCCESS, "Started 2 timesheets.")]
        for timesheet in (fresh(first), fresh(second)):
            assert timesheet.status == RUNNING
            assert timesheet.running_since is not None
            assert before <= timesheet.running_since <= after
            assert timesheet.accrued_until == timesheet.running_since
            assert timesheet.imputed == timedelta(0)
            segment = Segment.objects.get(timesheet=timesheet)
            assert (segment.started_at, segment.ended_at) == (timesheet.running_since, None)
        assert_invariants(now=timezone.now())

    def test_stop_goes_through_the_service(
        self, staff_client: Client, alice: User, bob: User, project: Project
    ) -> None:
        start = timezone.now() - timedelta(seconds=60)
        first, second = running_since(alice, project, start), running_since(bob, project, start)
        timesheet_accrue_running(now=start + timedelta(seconds=20))
        before = timezone.now()

        response = act(staff_client, "stop_selected", first, second)

        after = timezone.now()
        assert sent(response) == [(messages.SUCCESS, "Stopped 2 timesheets.")]
        for timesheet in (fresh(first), fresh(second)):
            assert timesheet.status == STOPPED
            assert (timesheet.accrued_until, timesheet.running_since) == (None, None)
            assert before - start <= timesheet.imputed <= after - start
            assert timesheet.imputed == segments_total(timesheet.pk, now=after)
            segment = Segment.objects.get(timesheet=timesheet)
            assert segment.end_reason == Segment.EndReason.USER
        assert_invariants(now=timezone.now())

    def test_rows_already_in_that_state_are_counted_apart(
        self, staff_client: Client, alice: User, bob: User, project: Project
    ) -> None:
        running = running_since(alice, project, at(0))
        stopped = new(bob, project)

        response = act(staff_client, "start_selected", running, stopped)

        assert sent(response) == [
            (messages.SUCCESS, "Started 1 timesheet."),
            (messages.INFO, "1 timesheet was already running."),
        ]
        assert fresh(running).running_since == at(0)
        assert fresh(stopped).status == RUNNING

    def test_an_archived_project_is_reported_and_the_others_still_start(
        self, staff_client: Client, alice: User, bob: User, project: Project
    ) -> None:
        archived = project_create(code="old", designation="Old work", now=T0)
        blocked = new(alice, archived)
        Project.objects.filter(pk=archived.pk).update(is_active=False)
        other = new(bob, project)

        response = act(staff_client, "start_selected", blocked, other)

        reported = sent(response)
        assert reported[1] == (messages.SUCCESS, "Started 1 timesheet.")
        level, text = reported[0]
        assert level == messages.ERROR
        assert text.startswith(f"Timesheet #{blocked.pk}: Project 'old' is archived")
        assert fresh(blocked).status == STOPPED
        assert not Segment.objects.filter(timesheet=blocked).exists()
        assert fresh(other).status == RUNNING
        assert_invariants(now=timezone.now())

    def test_a_replaced_start_is_reported(
        self, staff_client: Client, alice: User, project: Project
    ) -> None:
        first, second = new(alice, project), new(alice, project)

        response = act(staff_client, "start_selected", first, second)

        assert sent(response) == [
            (messages.SUCCESS, "Started 2 timesheets."),
            (
                messages.WARNING,
                "1 of them was stopped again to keep its owner within the limit of running "
                "timesheets.",
            ),
        ]
        assert (fresh(first).status, fresh(second).status) == (STOPPED, RUNNING)
        assert Segment.objects.get(timesheet=first).end_reason == Segment.EndReason.REPLACED
        assert_invariants(now=timezone.now())

    def test_actions_work_from_the_change_page(
        self, staff_client: Client, alice: User, project: Project
    ) -> None:
        timesheet = new(alice, project)
        url = reverse("admin:timesheets_timesheet_change", args=[timesheet.pk])
        page = staff_client.get(url).content.decode()
        assert 'value="start_selected">Start this timesheet</option>' in page

        response = staff_client.post(
            url, {"CHANGE_FORM-action": "start_selected", "_selected_action": str(timesheet.pk)}
        )

        assert response.status_code == 302
        assert sent(response) == [(messages.SUCCESS, "Started 1 timesheet.")]
        assert fresh(timesheet).status == RUNNING


class TestChangePage:
    def change_url(self, timesheet: Timesheet) -> str:
        return reverse("admin:timesheets_timesheet_change", args=[timesheet.pk])

    def test_segments_are_shown_read_only(
        self, staff_client: Client, root: User, alice: User, project: Project
    ) -> None:
        timesheet = timesheet_start(timesheet_id=new(alice, project).pk, now=at(0))
        timesheet_stop(timesheet_id=timesheet.pk, now=at(3661))
        timesheet_start(timesheet_id=timesheet.pk, now=at(4000))

        response = staff_client.get(self.change_url(timesheet))

        assert response.status_code == 200
        html = response.content.decode()
        (inline,) = response.context["inline_admin_formsets"]
        assert isinstance(inline.opts, SegmentInline)
        request = response.wsgi_request
        assert not inline.opts.has_add_permission(request, timesheet)
        assert not inline.opts.has_change_permission(request, timesheet)
        assert not inline.opts.has_delete_permission(request, timesheet)
        assert set(inline.readonly_fields) >= {"started_at", "ended_at", "end_reason", "length"}
        inputs = re.findall(r'<(input|select|textarea)\b([^>]*name="segments-\d+-[^>]*)>', html)
        assert inputs
        for tag, attributes in inputs:
            assert (tag, 'type="hidden"' in attributes) == ("input", True), attributes
        assert "1:01:01" in html
        assert "running" in html
        # No room for new rows: the page's script offers no "add another" link.
        assert 'name="segments-MAX_NUM_FORMS" value="0"' in html

    def test_forged_segment_data_changes_nothing(
        self, staff_client: Client, alice: User, project: Project
    ) -> None:
        timesheet = timesheet_start(timesheet_id=new(alice, project).pk, now=at(0))
        timesheet_stop(timesheet_id=timesheet.pk, now=at(60))
        segment = Segment.objects.get(timesheet=timesheet)

        response = staff_client.post(
            self.change_url(timesheet),
            {
                "description": "renamed",
                "segments-TOTAL_FORMS": "2",
                "segments-INITIAL_FORMS": "1",
                "segments-0-id": str(segment.pk),
                "segments-0-timesheet": str(timesheet.pk),
                "segments-0-started_at_0": "2020-01-01",
                "segments-0-started_at_1": "00:00:00",
                "segments-0-DELETE": "on",
                "segments-1-started_at_0": "2020-01-01",
                "segments-1-started_at_1": "00:00:00",
            },
        )

        assert response.status_code == 302
        assert fresh(timesheet).description == "renamed"
        kept = Segment.objects.filter(timesheet=timesheet).values_list("pk", "started_at")
        assert list(kept) == [(segment.pk, at(0))]
        assert fresh(timesheet).imputed == timedelta(seconds=60)

    def test_domain_fields_are_read_only(
        self, staff_client: Client, alice: User, project: Project
    ) -> None:
        timesheet = running_since(alice, project, timezone.now() - timedelta(seconds=5))

        response = staff_client.get(self.change_url(timesheet))

        html = response.content.decode()
        assert 'name="description"' in html
        for field in (
            "owner",
            "project",
            "status",
            "imputed",
            "accrued_until",
            "running_since",
            "auto_stopped",
        ):
            assert f'name="{field}' not in html
            assert f'class="form-row field-{field}' in html or f"field-{field}" in html
        cell = re.search(r'<span class="ts-live"[^>]*>[^<]*</span>', html)
        assert cell is not None
        assert live(cell.group(0))["data-running"] == "1"
        assert f'<script src="{static(SCRIPT)}"' in html

    def test_editing_writes_only_the_description(
        self, staff_client: Client, alice: User, project: Project
    ) -> None:
        timesheet = running_since(alice, project, timezone.now() - timedelta(seconds=30))

        with CaptureQueriesContext(connection) as queries:
            response = staff_client.post(
                self.change_url(timesheet),
                {**page_form(staff_client, self.change_url(timesheet)), "description": "renamed"},
            )

        assert response.status_code == 302
        writes = [
            q["sql"]
            for q in queries.captured_queries
            if q["sql"].startswith("UPDATE") and "timesheets_timesheet" in q["sql"]
        ]
        assert len(writes) == 1
        for column in ("status", "imputed", "accrued_until", "running_since", "slot"):
            assert f'"{column}"' not in writes[0]
        after = fresh(timesheet)
        assert after.description == "renamed"
        assert (after.status, after.running_since) == (RUNNING, timesheet.running_since)

    def test_add_creates_a_stopped_timesheet(
        self, staff_client: Client, alice: User, project: Project
    ) -> None:
        before = timezone.now()
        response = staff_client.post(
            reverse("admin:timesheets_timesheet_add"),
            {"owner": alice.pk, "project": project.pk, "description": "Planning"},
        )

        assert response.status_code == 302
        timesheet = Timesheet.objects.get()
        assert (timesheet.owner, timesheet.project, timesheet.description) == (
            alice,
            project,
            "Planning",
        )
        assert timesheet.status == STOPPED
        assert timesheet.imputed == timedelta(0)
        assert timesheet.created_at >= before
        assert not Segment.objects.exists()
        assert response["Location"] == TIMESHEETS

    def test_add_refuses_an_archived_project(
        self, staff_client: Client, alice: User, project: Project
    ) -> None:
        archived = project_create(code="old", designation="Old", is_active=False, now=T0)

        response = staff_client.post(
            reverse("admin:timesheets_timesheet_add"),
            {"owner": alice.pk, "project": archived.pk, "description": "x"},
        )

        assert response.status_code == 200
        assert "Choose an active project" in response.content.decode()
        assert not Timesheet.objects.exists()

    def test_recorded_time_cannot_be_deleted(
        self, staff_client: Client, alice: User, project: Project
    ) -> None:
        timesheet = new(alice, project)

        response = staff_client.get(
            reverse("admin:timesheets_timesheet_delete", args=[timesheet.pk])
        )

        assert response.status_code == 403
        assert Timesheet.objects.filter(pk=timesheet.pk).exists()


class TestProjects:
    URL = reverse("admin:timesheets_project_changelist")

    def test_filter_on_active_and_search(self, staff_client: Client) -> None:
        project_create(code="live", designation="Live work", now=T0)
        project_create(code="old", designation="Archived work", is_active=False, now=T0)

        def shown(**query: Any) -> list[str]:
            return [p.code for p in staff_client.get(self.URL, query).context["cl"].result_list]

        assert shown() == ["live", "old"]
        assert shown(is_active__exact="1") == ["live"]
        assert shown(is_active__exact="0") == ["old"]
        assert shown(q="archived") == ["old"]
        assert shown(q="live") == ["live"]

    def test_add_and_a_taken_code(self, staff_client: Client) -> None:
        url = reverse("admin:timesheets_project_add")
        data = {"code": "acme", "designation": "ACME", "is_active": "on"}

        assert staff_client.post(url, data).status_code == 302
        again = staff_client.post(url, {**data, "designation": "Other"})

        assert again.status_code == 200
        assert "Project with this Code already exists." in again.content.decode()
        assert list(Project.objects.values_list("code", "designation", "is_active")) == [
            ("acme", "ACME", True)
        ]

    def test_archive(self, staff_client: Client, project: Project) -> None:
        response = staff_client.post(
            reverse("admin:timesheets_project_change", args=[project.pk]),
            {"code": project.code, "designation": project.designation},
        )

        assert response.status_code == 302
        assert not Project.objects.get(pk=project.pk).is_active


class TestApiTokens:
    ADD = reverse("admin:timesheets_apitoken_add")
    LIST = reverse("admin:timesheets_apitoken_changelist")

    @pytest.mark.parametrize("button", [None, "_continue", "_addanother"])
    def test_add_shows_the_secret_in_its_answer_only_and_stores_only_its_digest(
        self, staff_client: Client, alice: User, button: str | None
    ) -> None:
        responses = [staff_client.get(self.ADD)]
        form = {"user": alice.pk, "name": "ci", "expires_at_0": "", "expires_at_1": ""}
        response = staff_client.post(self.ADD, form | ({button: "1"} if button else {}))
        responses.append(response)

        assert response.status_code == 200
        assert "no-store" in response["Cache-Control"].split(", ")
        html = response.content.decode()
        shown = re.findall(r'<code id="issued-secret">(tsk_[A-Za-z0-9_-]+)</code>', html)
        assert len(shown) == 1, html
        secret = shown[0]
        assert html.count(secret) == 1
        assert "Token for alice:" in html
        token = ApiToken.objects.get()
        assert token.digest == api_token_digest(secret)
        assert (token.user, token.name, token.expires_at) == (alice, "ci", None)
        assert token.prefix == secret[:12]
        assert secret not in {token.name, token.prefix, token.digest}
        change = reverse("admin:timesheets_apitoken_change", args=[token.pk])
        for url in (self.LIST, change, self.ADD, "/admin/"):
            responses.append(staff_client.get(url))
            assert secret not in responses[-1].content.decode(), url
        assert_kept_nowhere(secret, responses, staff_client)

    def test_the_digest_is_never_shown_and_name_and_expiry_can_change(
        self, staff_client: Client, alice: User
    ) -> None:
        issued = api_token_create(user=alice, name="laptop", expires_at=None, now=T0)
        url = reverse("admin:timesheets_apitoken_change", args=[issued.token.pk])

        page = staff_client.get(url).content.decode()
        listing = staff_client.get(self.LIST).content.decode()

        for html in (page, listing):
            assert issued.token.digest not in html
            assert issued.secret not in html
            assert f"{issued.token.prefix}…" in html
        assert 'name="user"' not in page
        response = staff_client.post(
            url,
            {"name": "old laptop", "expires_at_0": "2026-02-01", "expires_at_1": "12:00:00"},
        )
        assert response.status_code == 302
        token = ApiToken.objects.get()
        assert (token.name, token.expires_at) == (
            "old laptop",
            datetime(2026, 2, 1, 12, tzinfo=T0.tzinfo),
        )
        assert (token.digest, token.prefix, token.user) == (
            issued.token.digest,
            issued.token.prefix,
            alice,
        )

    def test_a_new_token_must_not_be_expired(self, staff_client: Client, alice: User) -> None:
        response = staff_client.post(
            self.ADD,
            {"user": alice.pk, "name": "ci", "expires_at_0": "2020-01-01", "expires_at_1": "00:00"},
        )

        assert response.status_code == 200
        assert "The expiry must be in the future." in response.content.decode()
        assert not ApiToken.objects.exists()


def assert_kept_nowhere(secret: str, responses: list[Response], client: Client) -> None:
    """The secret is in no cookie any response set, no message and no session."""
    for response in responses:
        for name, cookie in response.cookies.items():
            assert secret not in cookie.value, name
            if name == CookieStorage.cookie_name and cookie.value:
                carrying = RequestFactory().get("/", HTTP_COOKIE=f"{name}={cookie.value}")
                stored = list(CookieStorage(carrying))
                assert all(secret not in message.message for message in stored)
        pending = get_messages(response.wsgi_request)
        assert all(secret not in message.message for message in pending)
    session = client.session
    assert all(secret not in repr(value) for value in session.values())


def test_the_script_is_served_by_the_static_files_finder() -> None:
    path = finders.find(SCRIPT)
    assert isinstance(path, str)
    assert Path(path) == Path(__file__).resolve().parents[2] / "timesheets/static" / SCRIPT
    assert "ts-live" in Path(path).read_text()


def test_every_model_is_registered() -> None:
    for model in (Timesheet, Project, ApiToken):
        assert admin.site.is_registered(model)
