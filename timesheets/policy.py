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


def run_end(*, running_since: datetime, accrued_until: datetime, now: datetime) -> datetime:
    """The instant a run's time counts up to at ``now``.

    Never before the watermark (another process may have accrued past this clock, and time
    is never taken back) and never past the maximum run length.
    """
    end = max(now, accrued_until)
    limit = max_run_length()
    if limit is not None:
        end = min(end, running_since + limit)
    return end


def run_reached_limit(*, running_since: datetime, end: datetime) -> bool:
    limit = max_run_length()
    return limit is not None and end >= running_since + limit
