"""The pages' forms. Times are entered in the person's time zone (the view activates it)."""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, datetime, timedelta
from typing import Any

from django import forms
from django.conf import settings

from timesheets.models import Project

DESCRIPTION_LENGTH = 500  # characters, as Timesheet.description stores
TOKEN_NAME_LENGTH = 100  # characters, as ApiToken.name stores
# A past entry longer than this is a typing mistake (and beyond it instants may overflow).
MAX_ENTRY_LENGTH = timedelta(days=31)
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
OUT_OF_RANGE = "Enter a date and time between the years 1900 and 9000."
INSTANT_FORMAT = "%Y-%m-%dT%H:%M:%S"  # what <input type="datetime-local" step="1"> sends
_DURATION = re.compile(
    r"^\s*(?:(\d{1,4}):([0-5]?\d)(?::([0-5]\d))?|(\d{1,4}(?:[.,]\d+)?)\s*h?)\s*$"
)


class InstantInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs={"step": "1", **(attrs or {})}, format=INSTANT_FORMAT)


class InstantField(forms.DateTimeField):
    """A local date and time, read in the current (the person's) time zone."""

    widget = InstantInput

    def to_python(self, value: Any) -> datetime | None:
        try:
            result = super().to_python(value)
            if result is not None:
                result.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError(OUT_OF_RANGE) from None
        # Far enough from the years 1 and 9999 that UTC, and every database, can hold it.
        if result is not None and not EARLIEST <= result <= LATEST:
            raise forms.ValidationError(OUT_OF_RANGE)
        return result


class DurationInHoursField(forms.Field):
    """A length of time as H:MM, H:MM:SS or decimal hours (1.5 or 1.5h)."""

    def to_python(self, value: Any) -> timedelta | None:
        text = str(value or "").strip()
        if not text:
            return None
        match = _DURATION.match(text)
        if match is None:
            raise forms.ValidationError(
                "Enter a duration as hours and minutes (1:30), with seconds (1:30:00), or in "
                "hours (1.5)."
            )
        hours, minutes, seconds, decimal = match.groups()
        if decimal is not None:
            length = timedelta(hours=float(decimal.replace(",", ".")))
        else:
            length = timedelta(hours=int(hours), minutes=int(minutes), seconds=int(seconds or 0))
        if length <= timedelta(0):
            raise forms.ValidationError("The duration must be longer than zero.")
        if length > MAX_ENTRY_LENGTH:
            raise forms.ValidationError("The duration can be 31 days at most.")
        return length


class StartForm(forms.Form):
    project = forms.ModelChoiceField(
        queryset=Project.objects.filter(is_active=True), empty_label=None
    )
    description = forms.CharField(max_length=DESCRIPTION_LENGTH, required=False)


class PastEntryForm(forms.Form):
    project = forms.ModelChoiceField(
        queryset=Project.objects.filter(is_active=True), empty_label=None
    )
    description = forms.CharField(max_length=DESCRIPTION_LENGTH, required=False)
    started_at = InstantField(label="Start")
    ended_at = InstantField(label="End", required=False)
    duration = DurationInHoursField(
        required=False, help_text="Instead of the end: 1:30, 1:30:00 or 1.5 (hours)."
    )

    def clean(self) -> dict[str, Any] | None:
        data = super().clean() or {}
        start, end, length = data.get("started_at"), data.get("ended_at"), data.get("duration")
        if start is None or "ended_at" in self.errors or "duration" in self.errors:
            return data
        if (end is None) == (length is None):
            raise forms.ValidationError("Give either the end or the duration, not both.")
        if end is None:
            assert length is not None
            try:
                data["ended_at"] = start + length
            except OverflowError:
                raise forms.ValidationError("The entry would end after the year 9999.") from None
        elif end - start > MAX_ENTRY_LENGTH:
            raise forms.ValidationError("An entry can be 31 days long at most.")
        return data


class SegmentForm(forms.Form):
    """A run's start and, once it has ended, its end."""

    started_at = InstantField(label="Start")
    ended_at = InstantField(label="End", required=False)

    def __init__(self, *args: Any, running: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.running = running
        if running:
            # A running run ends when its timer stops.
            del self.fields["ended_at"]
        else:
            self.fields["ended_at"].required = True


class DescriptionForm(forms.Form):
    description = forms.CharField(max_length=DESCRIPTION_LENGTH, required=False)


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=TOKEN_NAME_LENGTH, required=False, help_text="What the token is for."
    )
    expires_at = InstantField(
        label="Expires", required=False, help_text="Leave empty for a token that does not expire."
    )

    def __init__(self, *args: Any, now: datetime, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.now = now

    def clean_expires_at(self) -> datetime | None:
        expires_at: datetime | None = self.cleaned_data["expires_at"]
        if expires_at is not None and expires_at <= self.now:
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at


def time_zone_choices() -> list[tuple[str, str]]:
    default = settings.TIME_ZONE
    return [("", f"The service's ({default})")] + [
        (name, name) for name in sorted(zoneinfo.available_timezones())
    ]


class AccountForm(forms.Form):
    time_zone = forms.ChoiceField(
        choices=time_zone_choices,
        required=False,
        help_text="Every page shows times in this time zone.",
    )
