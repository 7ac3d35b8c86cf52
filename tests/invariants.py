"""The domain's invariants, checked against what is in the database."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

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
    """Check I1, I2 and I3 for every timesheet; return each one's ``imputed`` for next time.

    I1: live accumulated time equals the sum of its segments, to the microsecond.
    I2: at most ``max_running_per_user`` running timesheets per owner (0: no limit).
    I3: ``imputed`` is never negative and never decreases.
    """
    imputed: dict[int, timedelta] = {}
    running = Counter[int]()
    for timesheet in Timesheet.objects.all():
        live = timesheet_accumulated(timesheet=timesheet, now=now)
        total = segments_total(timesheet.pk, now=now)
        assert live == total, f"I1: timesheet {timesheet.pk} live {live} != segments {total}"
        assert timesheet.imputed >= timedelta(0), f"I3: timesheet {timesheet.pk} is negative"
        if previous_imputed is not None and timesheet.pk in previous_imputed:
            before = previous_imputed[timesheet.pk]
            assert timesheet.imputed >= before, (
                f"I3: timesheet {timesheet.pk} went from {before} down to {timesheet.imputed}"
            )
        open_segments = Segment.objects.filter(timesheet=timesheet, ended_at__isnull=True).count()
        assert open_segments == (1 if timesheet.status == Timesheet.Status.RUNNING else 0)
        if timesheet.status == Timesheet.Status.RUNNING:
            running[timesheet.owner_id] += 1
        imputed[timesheet.pk] = timesheet.imputed
    if max_running_per_user:
        for owner_id, count in running.items():
            assert count <= max_running_per_user, f"I2: owner {owner_id} runs {count} timesheets"
    return imputed
