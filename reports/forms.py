"""What a report asks for, checked once for the API and the page alike."""

from __future__ import annotations

import zoneinfo
from datetime import date
from typing import Any, cast

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from reports.selectors import GROUPS, MAX_REPORT_DAYS, Group, ReportQuery
from timesheets.permissions import may_read_others

# Dates whose midnight exists in UTC in every time zone, a day either side included.
EARLIEST_DAY = date(1900, 1, 1)
LATEST_DAY = date(9998, 12, 31)
MAX_ID = 2**63 - 1
FORMATS = ("json", "csv", "xlsx")


class GroupsField(forms.MultipleChoiceField):
    """Groups given repeated (``group_by=user&group_by=day``) or comma-separated, or both."""

    def to_python(self, value: Any) -> list[str]:
        names = super().to_python(value)
        split = [part.strip() for name in names for part in name.split(",")]
        return list(dict.fromkeys(part for part in split if part))  # first mention's order


class ReportForm(forms.Form):
    # "from" is a Python keyword: the field is added under that name in __init__.
    to = forms.DateField(input_formats=["%Y-%m-%d"], help_text="The last day, included.")
    group_by = GroupsField(
        choices=[(group, group) for group in GROUPS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Any of user, project, day, week (weeks begin on Monday).",
    )
    user = forms.CharField(max_length=150, required=False, help_text="A username.")
    project = forms.IntegerField(min_value=1, max_value=MAX_ID, required=False)
    format = forms.ChoiceField(choices=[(f, f) for f in FORMATS], required=False)

    def __init__(self, data: Any, *, caller: User) -> None:
        super().__init__(data)
        self.caller = caller
        self.fields = {
            "from": forms.DateField(
                input_formats=["%Y-%m-%d"], help_text="The first day, included."
            ),
            **self.fields,
        }
        self.owner_id: int | None = None

    def _day(self, name: str) -> date | None:
        day = cast("date | None", self.cleaned_data.get(name))
        if day is not None and not EARLIEST_DAY <= day <= LATEST_DAY:
            self.add_error(name, f"Give a day from {EARLIEST_DAY} to {LATEST_DAY}.")
            return None
        return day

    def clean_user(self) -> str:
        username = cast("str", self.cleaned_data["user"])
        if "\x00" in username:
            raise ValidationError("A username contains no NUL character.")
        return username

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = self._day("from"), self._day("to")
        if start is not None and end is not None:
            if start > end:
                self.add_error("to", f"The last day ({end}) comes before the first ({start}).")
            elif (end - start).days + 1 > MAX_REPORT_DAYS:
                self.add_error(
                    "to", f"A report covers at most {MAX_REPORT_DAYS} days; ask for a shorter one."
                )
        self._choose_owner(data.get("user") or "")
        return data

    def _choose_owner(self, username: str) -> None:
        """Whose time: the caller's own by default; everyone's, or the one named, for holders
        of view_timesheet. Naming someone else without it is refused (code "forbidden")."""
        reads_others = may_read_others(self.caller)
        if not username or username == self.caller.get_username():
            self.owner_id = None if reads_others and not username else self.caller.pk
            return
        if not reads_others:
            self.add_error(
                "user",
                ValidationError(
                    "Reports of other people need the view_timesheet permission.",
                    code="forbidden",
                ),
            )
            return
        owner = get_user_model().objects.filter(username=username).first()
        if owner is None:
            self.add_error("user", f"No user named {username!r}.")
            return
        self.owner_id = owner.pk

    def forbidden(self) -> bool:
        return any(error.code == "forbidden" for error in self.errors.as_data().get("user", []))

    def message(self) -> str:
        """The errors in one sentence, for the API."""
        parts = [
            f"{name}: {' '.join(str(m) for m in messages)}"
            for name, messages in self.errors.items()
        ]
        return "Invalid report: " + "; ".join(parts)

    def query(self, zone: zoneinfo.ZoneInfo) -> ReportQuery:
        assert self.is_valid()
        data = self.cleaned_data
        return ReportQuery(
            start=data["from"],
            end=data["to"],
            zone=zone,
            group_by=tuple(cast("list[Group]", data["group_by"])),
            owner_id=self.owner_id,
            project_id=data["project"],
        )

    def format_name(self) -> str:
        return cast("str", self.cleaned_data.get("format") or "json")
