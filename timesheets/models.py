"""Projects, timesheets, their run segments, and API tokens.

Time semantics: a timesheet stores ``imputed``, the time accrued up to the watermark
``accrued_until``. While it runs, its live time is ``imputed + (now - accrued_until)``; when
it is stopped the watermark is null and the live time is ``imputed``. Only
``timesheets.services`` writes these fields.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class Project(models.Model):
    code = models.SlugField(
        max_length=32, unique=True, help_text="Short unique code: letters, digits, - and _."
    )
    designation = models.CharField(max_length=200)
    is_active = models.BooleanField(
        "active", default=True, help_text="Time can only be recorded on active projects."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} · {self.designation}"


class Timesheet(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "running"
        STOPPED = "stopped", "stopped"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="timesheets"
    )
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="timesheets")
    description = models.CharField(max_length=500, blank=True)
    status = models.CharField(
        max_length=8, choices=Status.choices, default=Status.STOPPED, editable=False
    )
    imputed = models.DurationField(
        default=timedelta(0), editable=False, help_text="Time accrued up to the watermark."
    )
    accrued_until = models.DateTimeField(
        "watermark",
        null=True,
        editable=False,
        help_text="Time up to which the running time has been accrued; empty when stopped.",
    )
    running_since = models.DateTimeField(
        null=True, editable=False, help_text="Start of the current run; empty when stopped."
    )
    # While running under a per-user limit, each running timesheet holds one of its owner's
    # numbered slots (1..limit); a unique constraint then makes exceeding the limit
    # impossible, even for concurrent requests. Null when stopped or when there is no limit.
    slot = models.PositiveSmallIntegerField(null=True, editable=False)
    auto_stopped = models.BooleanField(
        default=False,
        editable=False,
        help_text="A run reached the maximum length and was stopped automatically.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    # When the time fields above were read or written, on the time model's clock; set by the
    # selectors and the services, and the instant live time is computed at. Not stored.
    read_at: datetime | None = None

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("run_worker", "Can start the periodic-job runner")]
        constraints = [
            models.CheckConstraint(
                condition=Q(imputed__gte=timedelta(0)), name="timesheet_imputed_not_negative"
            ),
            models.CheckConstraint(
                condition=(
                    Q(
                        status="running",
                        accrued_until__isnull=False,
                        running_since__isnull=False,
                        accrued_until__gte=F("running_since"),
                    )
                    | Q(
                        status="stopped",
                        accrued_until__isnull=True,
                        running_since__isnull=True,
                        slot__isnull=True,
                    )
                ),
                name="timesheet_watermark_matches_status",
            ),
            models.UniqueConstraint(
                fields=["owner", "slot"],
                condition=Q(status="running"),
                name="timesheet_one_running_per_slot",
            ),
        ]
        indexes = [
            # Finds the runs that reached the maximum length. Neither this index nor the next
            # covers a column the accrual changes: an index on the watermark would make
            # PostgreSQL write a new index entry for every row at every accrual, instead of
            # updating rows in place.
            models.Index(
                fields=["running_since"],
                condition=Q(status="running"),
                name="timesheet_running_since_idx",
            ),
            # The accrual walks the running timesheets in id order, a batch at a time.
            models.Index(
                fields=["id"], condition=Q(status="running"), name="timesheet_running_id_idx"
            ),
            models.Index(fields=["owner", "-created_at"], name="timesheet_owner_created_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.description or self.project.code}"


class Segment(models.Model):
    """One run of a timesheet, from start to stop: the audit history of its time."""

    class EndReason(models.TextChoices):
        USER = "user", "stopped by its owner"
        REPLACED = "replaced", "replaced by another timesheet"
        AUTO = "auto", "stopped at the maximum run length"
        MANUAL = "manual", "entered by hand"

    timesheet = models.ForeignKey(Timesheet, on_delete=models.CASCADE, related_name="segments")
    # The timesheet's owner, repeated here so that the database can keep one person's runs from
    # overlapping (an owner never changes once a timesheet exists).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="segments",
        db_index=False,  # the (owner, ended_at) index serves
    )
    # Recorded while the per-person limit was 1: such runs of one person never overlap, across
    # all their timesheets. (Under a higher limit, or none, a person's runs may overlap.)
    exclusive = models.BooleanField(default=False)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True)
    end_reason = models.CharField(max_length=8, choices=EndReason.choices, blank=True)

    class Meta:
        ordering = ["started_at", "id"]
        indexes = [
            # The latest end of a person's runs: no new run of theirs may start before it.
            models.Index(fields=["owner", "ended_at"], name="segment_owner_ended_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["timesheet"],
                condition=Q(ended_at__isnull=True),
                name="segment_one_open_per_timesheet",
            ),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True, end_reason="")
                | (Q(ended_at__gte=F("started_at")) & ~Q(end_reason="")),
                name="segment_end_is_consistent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.started_at:%Y-%m-%d %H:%M:%S} → {self.ended_at or '…'}"


class Correction(models.Model):
    """One change made by hand to recorded time: who, when, and the state before and after."""

    class Action(models.TextChoices):
        SEGMENT_ADDED = "segment_added", "run added"
        SEGMENT_CHANGED = "segment_changed", "run changed"
        SEGMENT_DELETED = "segment_deleted", "run deleted"
        TIMESHEET_DELETED = "timesheet_deleted", "entry deleted"
        REVIEWED = "reviewed", "reviewed after an automatic stop"

    # Kept when the entry is deleted: the record says what it was (``before``).
    timesheet = models.ForeignKey(
        Timesheet, null=True, on_delete=models.SET_NULL, related_name="corrections"
    )
    segment_id = models.PositiveBigIntegerField(null=True)  # the run may be gone
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="corrections"
    )
    recorded_at = models.DateTimeField()
    action = models.CharField(max_length=20, choices=Action.choices)
    before = models.JSONField(null=True)
    after = models.JSONField(null=True)

    class Meta:
        ordering = ["-recorded_at", "-id"]
        indexes = [
            models.Index(fields=["timesheet", "-recorded_at"], name="correction_timesheet_idx")
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} by {self.actor_id} at {self.recorded_at}"


class Profile(models.Model):
    """What a person chooses for themselves."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    time_zone = models.CharField(
        max_length=64,
        blank=True,
        help_text="An IANA time zone name, such as Europe/Paris; empty: the service's.",
    )

    def __str__(self) -> str:
        return f"{self.user_id}: {self.time_zone or 'default time zone'}"


class ApiToken(models.Model):
    """A secret that authenticates API requests as its user. Only a digest is stored."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True, help_text="What the token is for.")
    prefix = models.CharField(
        max_length=16, editable=False, help_text="The token's first characters."
    )
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Leave empty for a token that does not expire."
    )
    last_used_at = models.DateTimeField(null=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"
