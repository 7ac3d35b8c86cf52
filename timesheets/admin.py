"""The staff's view of timesheets, projects and API tokens.

Every write of the domain goes through ``timesheets.services``: the forms here only collect
what those functions need, and saving an edit writes only the fields its form changed, so a
stale page never puts back time that the accrual job has moved since.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import ActionLocation
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import ForeignKey, QuerySet
from django.forms import ModelChoiceField
from django.http import HttpRequest, HttpResponse
from django.template.response import SimpleTemplateResponse, TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import ngettext

from reports.forms import EARLIEST_DAY, LATEST_DAY
from reports.selectors import local_midnight, runs_in, time_within
from timesheets import clock
from timesheets.exceptions import ProjectInactive
from timesheets.models import ApiToken, Project, Segment, Timesheet
from timesheets.policy import max_run_length
from timesheets.selectors import timesheet_accumulated, user_time_zone
from timesheets.services import (
    api_token_fill,
    project_create,
    timesheet_create,
    timesheet_describe,
    timesheet_start,
    timesheet_stop,
)

admin.site.site_header = "Timesheets"
admin.site.site_title = "Timesheets"
admin.site.index_title = "Administration"

RUNNING = Timesheet.Status.RUNNING
EMPTY = "—"

# Django's admin and form classes are generic only to the type checker.
if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldsetSpec

    TimesheetAdminBase = admin.ModelAdmin[Timesheet]
    SegmentInlineBase = admin.TabularInline[Segment, Timesheet]
    ProjectAdminBase = admin.ModelAdmin[Project]
    ApiTokenAdminBase = admin.ModelAdmin[ApiToken]
    ApiTokenFormBase = forms.ModelForm[ApiToken]
else:
    TimesheetAdminBase = ProjectAdminBase = ApiTokenAdminBase = admin.ModelAdmin
    SegmentInlineBase = admin.TabularInline
    ApiTokenFormBase = forms.ModelForm

# --- Formatting ---------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """H:MM:SS with unbounded hours, whole seconds cut off (as the page's script shows them)."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def format_age(seconds: float) -> str:
    """How long ago something happened, to the second while that is what matters."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole} s ago"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s ago"
    return f"{whole // 3600} h {whole % 3600 // 60} min ago"


# --- One clock reading per page -------------------------------------------------------------

# Every time cell of one page is computed from the same instant, so that rows and fields of
# one page agree with each other; outside a page (e.g. in a shell) each call reads the clock.
_page_now: ContextVar[datetime | None] = ContextVar("timesheets_admin_page_now", default=None)


def page_now() -> datetime:
    return _page_now.get() or clock.read()


@contextmanager
def _one_clock() -> Iterator[None]:
    token = _page_now.set(clock.read())
    try:
        yield
    finally:
        _page_now.reset(token)


def _rendered(view: Callable[[], HttpResponse]) -> HttpResponse:
    """Run an admin view and render its page while one clock reading is in force."""
    with _one_clock():
        response = view()
        # The cells are computed while the template renders, which Django would otherwise do
        # after the view has returned, outside the clock reading.
        if isinstance(response, SimpleTemplateResponse):
            response.render()
        return response


def live_time(timesheet: Timesheet, *, now: datetime) -> SafeString:
    """The accumulated time, marked up so that the page's script keeps it ticking."""
    accumulated = timesheet_accumulated(timesheet=timesheet, now=now)
    seconds = accumulated.total_seconds()
    text = format_duration(seconds)
    if (
        timesheet.status != RUNNING
        or timesheet.accrued_until is None
        or timesheet.running_since is None
    ):
        return format_html(
            '<span class="ts-live" data-seconds="{}" data-running="0">{}</span>',
            f"{seconds:.6f}",
            text,
        )
    limit = max_run_length()
    if limit is None:
        return format_html(
            '<span class="ts-live" data-seconds="{}" data-running="1">{}</span>',
            f"{seconds:.6f}",
            text,
        )
    # Past the maximum run length the time stops growing, so the script must stop there too.
    # (A limit lowered below what the run has accrued: the time counted so far stays.)
    ceiling = timesheet.imputed + max(
        timedelta(0), timesheet.running_since + limit - timesheet.accrued_until
    )
    return format_html(
        '<span class="ts-live" data-seconds="{}" data-running="{}" data-max-seconds="{}">{}</span>',
        f"{seconds:.6f}",
        "1" if accumulated < ceiling else "0",
        f"{ceiling.total_seconds():.6f}",
        text,
    )


# --- Timesheets -----------------------------------------------------------------------------


class SegmentInline(SegmentInlineBase):
    """The runs of a timesheet: its audit history, which no one edits."""

    model = Segment
    fields = ("started_at", "ended_at", "length", "end_reason")
    readonly_fields = fields
    extra = 0
    can_delete = False

    # Django asks an inline with the parent object; its type stubs disagree with themselves.
    def has_add_permission(self, request: HttpRequest, obj: Timesheet | None) -> bool:  # type: ignore[override]
        return False

    def has_change_permission(self, request: HttpRequest, obj: Timesheet | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Timesheet | None = None) -> bool:
        return False

    @admin.display(description="length")
    def length(self, segment: Segment) -> str:
        if segment.ended_at is None:
            return "running"
        return format_duration((segment.ended_at - segment.started_at).total_seconds())


class RunDayFilter(admin.ListFilter):
    """Timesheets with time on the local days from ``run_from`` to ``run_to`` (either may be
    left out), in the staff member's time zone; the list's totals then count those days only."""

    title = "run day"
    template = "admin/timesheets/run_day_filter.html"
    parameters = ("run_from", "run_to")

    def __init__(
        self,
        request: HttpRequest,
        params: dict[str, list[str]],
        model: type[Timesheet],
        model_admin: admin.ModelAdmin[Timesheet],
    ) -> None:
        super().__init__(request, params, model, model_admin)
        self.zone = user_time_zone(request.user)
        self.values: dict[str, str] = {}
        for name in self.parameters:
            if name in params:
                self.values[name] = params.pop(name)[-1]
                self.used_parameters[name] = self.values[name]
        try:
            self.days = [self._day(name) for name in self.parameters]
        except ValueError as error:
            # The admin then shows the list unfiltered, with a warning.
            raise IncorrectLookupParameters(error) from error

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        """The instants the chosen days span; None for an end left open."""
        start, end = self.days
        since = None if start is None else local_midnight(start, self.zone)
        until = None if end is None else local_midnight(end + timedelta(days=1), self.zone)
        return since, until

    def _day(self, name: str) -> date | None:
        text = self.values.get(name, "")
        if not text:
            return None
        day = date.fromisoformat(text)
        if not EARLIEST_DAY <= day <= LATEST_DAY:
            raise ValueError(f"{name}: give a day from {EARLIEST_DAY} to {LATEST_DAY}")
        return day

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return list(self.parameters)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Timesheet]) -> QuerySet[Timesheet]:
        since, until = self.bounds()
        if since is None and until is None:
            return queryset
        runs = runs_in(
            since=since or datetime.min.replace(tzinfo=UTC),
            until=until or datetime.max.replace(tzinfo=UTC),
        )
        return queryset.filter(pk__in=runs.values("timesheet_id"))

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:
        others = [
            (name, value)
            for name, value in changelist.params.items()
            if name not in self.parameters
        ]
        yield {
            "values": self.values,
            "others": others,
            "clear": changelist.get_query_string(remove=list(self.parameters)),
            "time_zone": self.zone.key,
        }


# Shown on the change page, and never edited there: only the services write them.
TIME_FIELDS = (
    "status",
    "accumulated",
    "imputed",
    "accrued_until",
    "checkpoint_age",
    "running_since",
    "auto_stopped",
)
RECORD_FIELDS = ("created_at", "updated_at")


class TimesheetAdmin(TimesheetAdminBase):
    list_display = (
        "id",
        "owner",
        "project",
        "description",
        "status",
        "accumulated",
        "checkpoint_age",
        "auto_stopped",
    )
    list_filter = (RunDayFilter, "status", "project", "owner", "auto_stopped")
    search_fields = ("description", "project__code", "project__designation", "owner__username")
    list_select_related = ("owner", "project")
    actions = ("start_selected", "stop_selected")

    class Media:
        js = ("timesheets/admin/live.js",)

    # Pages -------------------------------------------------------------------------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return _rendered(
            lambda: self._with_totals(
                super(TimesheetAdmin, self).changelist_view(request, extra_context)
            )
        )

    def _with_totals(self, response: HttpResponse) -> HttpResponse:
        """The time of every filtered row (all pages), within the chosen run days if any."""
        context: dict[str, Any] | None = getattr(response, "context_data", None)
        changelist = None if context is None else context.get("cl")
        if context is None or changelist is None:  # a redirect, or the page of an action
            return response
        days = next(
            (spec for spec in changelist.filter_specs if isinstance(spec, RunDayFilter)), None
        )
        since, until = days.bounds() if days is not None else (None, None)
        total = time_within(changelist.queryset, since=since, until=until, now=page_now())
        context["filtered_total"] = format_duration(total.total_seconds())
        context["filtered_days"] = days.values if days is not None else {}
        return response

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        return _rendered(
            lambda: super(TimesheetAdmin, self).changeform_view(
                request, object_id, form_url, extra_context
            )
        )

    def get_fieldsets(self, request: HttpRequest, obj: Timesheet | None = None) -> _FieldsetSpec:
        if obj is None:
            return [(None, {"fields": ("owner", "project", "description")})]
        return [
            (None, {"fields": ("owner", "project", "description")}),
            ("Time", {"fields": TIME_FIELDS}),
            ("Record", {"fields": RECORD_FIELDS}),
        ]

    def get_inlines(
        self, request: HttpRequest, obj: Timesheet | None
    ) -> tuple[type[SegmentInline], ...]:
        # A timesheet being created has no runs yet.
        return () if obj is None else (SegmentInline,)

    def get_readonly_fields(
        self, request: HttpRequest, obj: Timesheet | None = None
    ) -> tuple[str, ...]:
        if obj is None:
            return ()
        # Owner and project stay as created: moving a run to another person would bypass the
        # per-person limit, and moving recorded time to another project is not an edit.
        return ("owner", "project", *TIME_FIELDS, *RECORD_FIELDS)

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField[Any] | None:
        if db_field.name == "project":
            kwargs["queryset"] = Project.objects.filter(is_active=True)
            kwargs["error_messages"] = {
                "invalid_choice": "Choose an active project: time can only be recorded on "
                "active projects."
            }
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_delete_permission(self, request: HttpRequest, obj: Timesheet | None = None) -> bool:
        # Recorded time is kept: there is no way to delete it that keeps the history honest.
        return False

    def save_model(
        self, request: HttpRequest, obj: Timesheet, form: forms.ModelForm[Timesheet], change: bool
    ) -> None:
        if change:
            if "description" in form.changed_data:
                timesheet_describe(
                    timesheet=obj, description=obj.description, actor_id=request.user.pk
                )
            return
        created = timesheet_create(
            owner=obj.owner,
            project=obj.project,
            description=obj.description,
            actor_id=request.user.pk,
        )
        # The admin goes on with the instance its form built (for the log and the redirect).
        obj.pk = created.pk
        obj.refresh_from_db()
        obj._state.adding = False

    # Columns and fields ------------------------------------------------------------------

    @admin.display(description="accumulated")
    def accumulated(self, timesheet: Timesheet) -> SafeString:
        return live_time(timesheet, now=page_now())

    @admin.display(description="last checkpoint")
    def checkpoint_age(self, timesheet: Timesheet) -> str:
        if timesheet.status != RUNNING or timesheet.accrued_until is None:
            return EMPTY
        return format_age((page_now() - timesheet.accrued_until).total_seconds())

    # Actions -----------------------------------------------------------------------------

    @admin.action(
        description="Start this timesheet",
        description_plural="Start selected timesheets",
        permissions=["change"],
        location=[ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM],
    )
    def start_selected(self, request: HttpRequest, queryset: QuerySet[Timesheet]) -> None:
        started = self._apply(request, queryset, timesheet_start, "Started", "already running")
        # Under a per-person limit a later start in the same batch may replace an earlier one.
        replaced = (
            Timesheet.objects.filter(pk__in=started).exclude(status=RUNNING).count()
            if started
            else 0
        )
        if replaced:
            self.message_user(
                request,
                ngettext(
                    "%(count)d of them was stopped again to keep its owner within the limit "
                    "of running timesheets.",
                    "%(count)d of them were stopped again to keep their owners within the "
                    "limit of running timesheets.",
                    replaced,
                )
                % {"count": replaced},
                messages.WARNING,
            )

    @admin.action(
        description="Stop this timesheet",
        description_plural="Stop selected timesheets",
        permissions=["change"],
        location=[ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM],
    )
    def stop_selected(self, request: HttpRequest, queryset: QuerySet[Timesheet]) -> None:
        self._apply(request, queryset, timesheet_stop, "Stopped", "already stopped")

    def _apply(
        self,
        request: HttpRequest,
        queryset: QuerySet[Timesheet],
        operation: Callable[..., Timesheet],
        done: str,
        unchanged_state: str,
    ) -> list[int]:
        """Apply a service to each timesheet on its own; return the ids it changed."""
        changed: list[int] = []
        unchanged = 0
        for timesheet in queryset.order_by("pk"):
            before = timesheet.status
            try:
                after = operation(timesheet_id=timesheet.pk, actor_id=request.user.pk).status
            except ProjectInactive as error:
                self.message_user(
                    request, f"Timesheet #{timesheet.pk}: {error.message}", messages.ERROR
                )
                continue
            if after == before:
                unchanged += 1
            else:
                changed.append(timesheet.pk)
        if changed:
            self.message_user(
                request,
                ngettext(
                    "%(done)s %(count)d timesheet.", "%(done)s %(count)d timesheets.", len(changed)
                )
                % {"done": done, "count": len(changed)},
                messages.SUCCESS,
            )
        if unchanged:
            self.message_user(
                request,
                ngettext(
                    "%(count)d timesheet was %(state)s.",
                    "%(count)d timesheets were %(state)s.",
                    unchanged,
                )
                % {"count": unchanged, "state": unchanged_state},
                messages.INFO,
            )
        return changed


# --- Projects -------------------------------------------------------------------------------


class ProjectAdmin(ProjectAdminBase):
    list_display = ("code", "designation", "is_active", "created_at")
    list_filter = ("is_active",)
    search_fields = ("code", "designation")
    fields = ("code", "designation", "is_active")

    def save_model(
        self, request: HttpRequest, obj: Project, form: forms.ModelForm[Project], change: bool
    ) -> None:
        if change:
            obj.save(update_fields=form.changed_data)
            return
        created = project_create(
            code=obj.code,
            designation=obj.designation,
            is_active=obj.is_active,
            actor_id=request.user.pk,
        )
        obj.pk = created.pk
        obj.refresh_from_db()
        obj._state.adding = False


# --- API tokens -----------------------------------------------------------------------------


class ApiTokenForm(ApiTokenFormBase):
    class Meta:
        model = ApiToken
        fields = ("user", "name", "expires_at")

    def clean_expires_at(self) -> datetime | None:
        expires_at: datetime | None = self.cleaned_data["expires_at"]
        # A new token that is already expired is a mistake; an existing one may be expired on
        # purpose, which is how a token is revoked while its record is kept.
        if self.instance._state.adding and expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at


class ApiTokenAdmin(ApiTokenAdminBase):
    form = ApiTokenForm
    list_display = ("user", "name", "prefix_display", "created_at", "expires_at", "last_used_at")
    list_filter = ("user",)
    search_fields = ("name", "prefix", "user__username")
    list_select_related = ("user",)

    def get_fieldsets(self, request: HttpRequest, obj: ApiToken | None = None) -> _FieldsetSpec:
        if obj is None:
            return [(None, {"fields": ("user", "name", "expires_at")})]
        # The digest is never shown: it is all a thief needs to recognise a stolen secret.
        return [
            (
                None,
                {
                    "fields": (
                        "user",
                        "name",
                        "expires_at",
                        "prefix_display",
                        "created_at",
                        "last_used_at",
                    )
                },
            )
        ]

    def get_readonly_fields(
        self, request: HttpRequest, obj: ApiToken | None = None
    ) -> tuple[str, ...]:
        if obj is None:
            return ()
        return ("user", "prefix_display", "created_at", "last_used_at")

    @admin.display(description="prefix", ordering="prefix")
    def prefix_display(self, token: ApiToken) -> str:
        return f"{token.prefix}…"

    def save_model(
        self, request: HttpRequest, obj: ApiToken, form: forms.ModelForm[ApiToken], change: bool
    ) -> None:
        if change:
            obj.save(update_fields=[f for f in form.changed_data if f in ("name", "expires_at")])
            return
        secret = api_token_fill(token=obj, now=timezone.now())
        obj.save()
        _issued[request] = secret

    def response_add(
        self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None
    ) -> HttpResponse:
        # The secret goes in this answer's page and nowhere else: a message would travel back
        # to the browser in the messages cookie, or sit in the session, after the page is gone.
        secret = _issued.pop(request, None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        info = (self.opts.app_label, self.opts.model_name)
        context = {
            **self.admin_site.each_context(request),
            "title": "API token created",
            "opts": self.opts,
            "username": obj.user.get_username(),
            "secret": secret,
            "list_url": reverse("admin:{}_{}_changelist".format(*info)),
            "add_url": reverse("admin:{}_{}_add".format(*info)),
            "change_url": reverse("admin:{}_{}_change".format(*info), args=[obj.pk]),
        }
        # The admin's views are never cached (Cache-Control: no-store): no copy of the page stays.
        return TemplateResponse(request, "admin/timesheets/apitoken/issued.html", context)


# The secret of a token just added, from save_model to response_add of the same request.
_issued: WeakKeyDictionary[HttpRequest, str] = WeakKeyDictionary()


admin.site.register(Timesheet, TimesheetAdmin)
admin.site.register(Project, ProjectAdmin)
admin.site.register(ApiToken, ApiTokenAdmin)
