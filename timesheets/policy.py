"""The limits the domain enforces, read from settings at the moment they apply."""

from datetime import datetime, timedelta

from django.conf import settings


def max_running_per_user() -> int:
    """How many timesheets one person may run at once; 0 means no limit."""
    return int(settings.TIMESHEETS_MAX_RUNNING_PER_USER)


def max_run_length() -> timedelta | None:
    """The longest a single run counts before it is stopped; None when there is no limit."""
    hours = float(settings.TIMESHEETS_MAX_RUNNING_HOURS)
    return timedelta(hours=hours) if hours > 0 else None


def runs_are_exclusive() -> bool:
    """Whether one person's runs may not overlap, across all their timesheets."""
    return max_running_per_user() == 1


def run_end(
    *, running_since: datetime, accrued_until: datetime, now: datetime, max_run: timedelta | None
) -> datetime:
    """The instant a run's time counts up to at ``now``.

    Never past the maximum run length, and never before the watermark: another process may
    have accrued past this clock, or the limit may have been lowered below what the run has
    already accrued, and time already counted stays counted.
    """
    end = now if max_run is None else min(now, running_since + max_run)
    return max(end, accrued_until)


def run_reached_limit(*, running_since: datetime, end: datetime, max_run: timedelta | None) -> bool:
    return max_run is not None and end >= running_since + max_run
