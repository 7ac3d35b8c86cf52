"""The outbox: one event per change of the domain, written in the change's own transaction."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Event(models.Model):
    """Something that happened to the domain, with the state it left.

    Ids increase in the order the changes committed (``events.services`` sees to that), so a
    reader that has seen every event up to an id has missed none below it.
    """

    class Type(models.TextChoices):
        TIMESHEET_CREATED = "timesheet.created"
        TIMESHEET_UPDATED = "timesheet.updated"
        TIMESHEET_STARTED = "timesheet.started"
        TIMESHEET_STOPPED = "timesheet.stopped"
        TIMESHEET_AUTO_STOPPED = "timesheet.auto_stopped"
        TIMESHEET_REVIEWED = "timesheet.reviewed"
        TIMESHEET_DELETED = "timesheet.deleted"
        SEGMENT_CREATED = "segment.created"
        SEGMENT_UPDATED = "segment.updated"
        SEGMENT_DELETED = "segment.deleted"
        PROJECT_CREATED = "project.created"

    id = models.BigAutoField(primary_key=True)
    type = models.CharField(max_length=40, choices=Type.choices)
    occurred_at = models.DateTimeField(help_text="On the database's clock.")
    # Who made the change; empty for the service's own jobs (an automatic stop).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Whose time it is; empty for what concerns everyone (a new project).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    timesheet_id = models.PositiveBigIntegerField(null=True)  # kept when the entry is gone
    data = models.JSONField(help_text="The new state, as the API represents it.")

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["owner", "id"], name="event_owner_idx"),
            models.Index(fields=["occurred_at"], name="event_occurred_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.type}"
