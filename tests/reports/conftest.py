"""Runs written straight into the table: reports read whatever runs there are."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from django.contrib.auth.models import User

from timesheets.models import Project, Segment, Timesheet
from timesheets.services import timesheet_create

AddRun = Callable[..., Segment]


@pytest.fixture
def add_run(project: Project) -> AddRun:
    entries: dict[tuple[int, int], Timesheet] = {}

    def add(owner: User, start: datetime, end: datetime, *, on: Project | None = None) -> Segment:
        chosen = on or project
        entry = entries.get((owner.pk, chosen.pk))
        if entry is None:
            entry = timesheet_create(owner=owner, project=chosen, description="", now=start)
            entries[owner.pk, chosen.pk] = entry
        return Segment.objects.create(
            timesheet=entry,
            owner=owner,
            started_at=start,
            ended_at=end,
            end_reason=Segment.EndReason.MANUAL,
        )

    return add
