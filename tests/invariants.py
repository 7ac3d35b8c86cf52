"""The domain's invariants, checked against what is in the database."""

from __future__ import annotations

from datetime import datetime, timedelta

from timesheets.integrity import check
from timesheets.models import Segment, Timesheet
from timesheets.policy import max_run_length
from timesheets.selectors import timesheet_accumulated


def segments_total(timesheet_id: int, *, now: datetime) -> timedelta:
    """The sum over a timesheet's runs of ``(ended_at or now) - started_at``.

    An open run counts up to ``now`` but never past the maximum run length: past it, the run
    is over and only waits for the forgotten-timer job to close it at exactly that length.
    """
    limit = max_run_length()
    total = timedelta(0)
    for segment in Segment.objects.filter(timesheet_id=timesheet_id):
        end = segment.ended_at
        if end is None:
            end = now if limit is None else min(now, segment.started_at + limit)
        total += end - segment.started_at
    return total


def assert_invariants(
    *,
    now: datetime,
    max_running_per_user: int = 1,
    previous_imputed: dict[int, timedelta] | None = None,
) -> dict[int, timedelta]:
    """Check every rule of ``timesheets.integrity`` at ``now``, and that live time equals the
    sum of the runs at ``now`` and ``imputed`` never decreased since ``previous_imputed``.

    Returns each timesheet's ``imputed`` for next time.
    """
    report = check(now=now, max_running=max_running_per_user)
    assert report.ok, "\n".join(str(example) for example in report.examples)
    imputed: dict[int, timedelta] = {}
    for timesheet in Timesheet.objects.all():
        live = timesheet_accumulated(timesheet=timesheet, now=now)
        if timesheet.accrued_until is None or timesheet.accrued_until <= now:
            total = segments_total(timesheet.pk, now=now)
            assert live == total, f"timesheet {timesheet.pk} live {live} != segments {total}"
        if previous_imputed is not None and timesheet.pk in previous_imputed:
            before = previous_imputed[timesheet.pk]
            assert timesheet.imputed >= before, (
                f"timesheet {timesheet.pk} went from {before} down to {timesheet.imputed}"
            )
        imputed[timesheet.pk] = timesheet.imputed
    return imputed
