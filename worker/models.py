"""What each runner process last said of itself, so that any process can show them all."""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class RunnerProcess(models.Model):
    """A runner that is or was alive: its last status, and when the database last heard it."""

    key = models.CharField(max_length=200, unique=True, help_text="host, pid and start instant")
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(help_text="The database's clock at the last heartbeat.")
    status = models.JSONField(
        default=dict, encoder=DjangoJSONEncoder, help_text="The runner's status at that heartbeat."
    )

    class Meta:
        ordering = ["host", "pid", "started_at"]
        indexes = [models.Index(fields=["seen_at"], name="worker_runner_seen_at")]

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}"
