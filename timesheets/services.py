"""Every write of the timesheets domain. Views, the admin and the jobs call these functions.

Each takes the current time as ``now`` so that tests drive the clock. Time moves from the
watermark into ``imputed`` only through set-based UPDATEs built from F expressions, so a row is
never read, changed in Python and saved back.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import (
    DateTimeField,
    DurationField,
    Expression,
    ExpressionWrapper,
    F,
    Q,
    Value,
)
from django.db.models.functions import Least

from timesheets.exceptions import ProjectCodeTaken, ProjectInactive
from timesheets.models import ApiToken, Project, Segment, Timesheet
from timesheets.policy import max_run_length, max_running_per_user, run_end, run_reached_limit

RUNNING = Timesheet.Status.RUNNING
STOPPED = Timesheet.Status.STOPPED
# What start and stop change; the caller's instance is refreshed with these and keeps the
# relations it has already loaded.
STATE_FIELDS = (
    "status",
    "imputed",
    "accrued_until",
    "running_since",
    "slot",
    "auto_stopped",
    "updated_at",
)

# --- Projects -----------------------------------------------------------------------------


def project_create(
    *, code: str, designation: str, is_active: bool = True, now: datetime
) -> Project:
    try:
        with transaction.atomic():
            return Project.objects.create(
                code=code, designation=designation, is_active=is_active, created_at=now
            )
    except IntegrityError:
        if Project.objects.filter(code=code).exists():
            raise ProjectCodeTaken(
                f"A project with code {code!r} already exists; choose another code."
            ) from None
        raise


# --- Timesheets ---------------------------------------------------------------------------


def timesheet_create(
    *,
    owner: User,
    project: Project,
    description: str,
    now: datetime,
    start: bool = False,
) -> Timesheet:
    _ensure_active(project)
    with transaction.atomic():
        timesheet = Timesheet.objects.create(
            owner=owner, project=project, description=description, created_at=now, updated_at=now
        )
        if start:
            timesheet = timesheet_start(timesheet=timesheet, now=now)
    return timesheet


def timesheet_describe(*, timesheet: Timesheet, description: str, now: datetime) -> Timesheet:
    """Change what the timesheet is for; its time is not touched."""
    Timesheet.objects.filter(pk=timesheet.pk).update(description=description, updated_at=now)
    timesheet.description = description
    timesheet.updated_at = now
    return timesheet


def timesheet_start(*, timesheet: Timesheet, now: datetime) -> Timesheet:
    """Start the timesheet's clock at ``now``. Starting a running timesheet changes nothing.

    Under a per-user limit, the owner's longest-running timesheets are stopped (end reason
    ``replaced``) until this one fits, in the same transaction.
    """
    with transaction.atomic():
        # Starts of one person are serialised on their user row, so that two concurrent
        # starts cannot both see a free slot. (SQLite serialises every write transaction.)
        list(
            get_user_model()
            .objects.select_for_update()
            .filter(pk=timesheet.owner_id)
            .values_list("pk", flat=True)
        )
        current = (
            Timesheet.objects.select_for_update(of=("self",))
            .select_related("project")
            .get(pk=timesheet.pk)
        )
        if current.status == STOPPED:
            _ensure_active(current.project)
            slot = _free_slot(owner_id=current.owner_id, now=now)
            Timesheet.objects.filter(pk=current.pk, status=STOPPED).update(
                status=RUNNING, accrued_until=now, running_since=now, slot=slot, updated_at=now
            )
            Segment.objects.create(timesheet_id=current.pk, started_at=now)
    timesheet.refresh_from_db(fields=STATE_FIELDS)
    return timesheet


def timesheet_stop(
    *,
    timesheet: Timesheet,
    now: datetime,
    reason: Segment.EndReason = Segment.EndReason.USER,
) -> Timesheet:
    """Stop the timesheet at ``now``. Stopping a stopped timesheet is a successful no-op."""
    with transaction.atomic():
        current = Timesheet.objects.select_for_update().get(pk=timesheet.pk)
        if current.status == RUNNING:
            _stop_locked(current, now=now, reason=reason)
    timesheet.refresh_from_db(fields=STATE_FIELDS)
    return timesheet


def timesheet_accrue_running(*, now: datetime) -> int:
    """Accrue every running timesheet up to ``now`` in one UPDATE; return the rows advanced.

    Only rows whose watermark is behind ``now`` move, so any number of processes may run this
    at once, each with its own clock, and every second is still counted exactly once.
    """
    condition, changes = _accrual(now)
    return Timesheet.objects.filter(condition).update(**changes)


async def timesheet_aaccrue_running(*, now: datetime) -> int:
    """``timesheet_accrue_running`` through Django's native async ORM."""
    condition, changes = _accrual(now)
    return await Timesheet.objects.filter(condition).aupdate(**changes)


FORGOTTEN_BATCH = 500  # timesheets per transaction


def timesheet_stop_forgotten(*, now: datetime) -> int:
    """Stop, at exactly the maximum run length, every run that has reached it.

    Works in short transactions over batches of rows locked with SKIP LOCKED, so that several
    processes share the work and none waits for a row another is stopping. Returns the number
    of timesheets stopped.
    """
    limit = max_run_length()
    if limit is None:
        return 0
    stopped = 0
    while True:
        with transaction.atomic():
            ids = list(
                Timesheet.objects.select_for_update(skip_locked=True)
                .filter(status=RUNNING, running_since__lte=now - limit)
                .order_by("pk")
                .values_list("pk", flat=True)[:FORGOTTEN_BATCH]
            )
            if not ids:
                return stopped
            Segment.objects.filter(timesheet_id__in=ids, ended_at__isnull=True).update(
                ended_at=F("started_at") + Value(limit, output_field=DurationField()),
                end_reason=Segment.EndReason.AUTO,
            )
            end = F("running_since") + Value(limit, output_field=DurationField())
            stopped += Timesheet.objects.filter(pk__in=ids, status=RUNNING).update(
                imputed=F("imputed") + _duration(end - F("accrued_until")),
                **_stopped_fields(now=now, auto_stopped=True),
            )
        if len(ids) < FORGOTTEN_BATCH:
            return stopped


# --- API tokens ---------------------------------------------------------------------------

TOKEN_PREFIX = "tsk_"  # noqa: S105  (a marker that makes leaked tokens easy to scan for)
TOKEN_TOUCH_INTERVAL = timedelta(seconds=60)  # last-used time is written at most this often


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once; only its digest is stored


def api_token_digest(secret: str) -> str:
    # The secret is 256 random bits, so a fast hash is enough: there is nothing to guess.
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def api_token_create(
    *, user: User, name: str, expires_at: datetime | None, now: datetime
) -> IssuedToken:
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=secret[: len(TOKEN_PREFIX) + 8],
        digest=api_token_digest(secret),
        expires_at=expires_at,
        created_at=now,
    )
    return IssuedToken(token=token, secret=secret)


def api_token_fill(*, token: ApiToken, now: datetime) -> str:
    """Give an unsaved token (built by the admin's form) a fresh secret; return the secret."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token.prefix = secret[: len(TOKEN_PREFIX) + 8]
    token.digest = api_token_digest(secret)
    token.created_at = now
    return secret


async def api_token_amark_used(*, token: ApiToken, now: datetime) -> None:
    """Record that the token was used, at most once a minute so reads stay reads."""
    if token.last_used_at is None or now - token.last_used_at >= TOKEN_TOUCH_INTERVAL:
        await ApiToken.objects.filter(pk=token.pk).aupdate(last_used_at=now)
        token.last_used_at = now


# --- Internals ----------------------------------------------------------------------------


def _duration(expression: Any) -> Expression:
    """Mark a difference of two instants as a duration, which is what it is on every database."""
    return ExpressionWrapper(expression, output_field=DurationField())


def _accrual(now: datetime) -> tuple[Q, dict[str, Any]]:
    """The condition and the changes that move running timesheets' watermarks to ``now``.

    With a maximum run length the watermark stops at the end of the allowed run, so that the
    forgotten-timer job can stop the run at exactly that length without taking time back.
    """
    target: Expression = Value(now, output_field=DateTimeField())
    limit = max_run_length()
    if limit is not None:
        target = Least(
            target,
            F("running_since") + Value(limit, output_field=DurationField()),
            output_field=DateTimeField(),
        )
    condition = Q(status=RUNNING, accrued_until__lt=target)
    changes = {
        "imputed": F("imputed") + _duration(target - F("accrued_until")),
        "accrued_until": target,
    }
    return condition, changes


def _ensure_active(project: Project) -> None:
    if not project.is_active:
        raise ProjectInactive(
            f"Project {project.code!r} is archived; time can only be recorded on active projects."
        )


def _free_slot(*, owner_id: int, now: datetime) -> int | None:
    """Make room under the per-user limit and return the slot the new run takes."""
    limit = max_running_per_user()
    if limit == 0:
        return None
    # Read without locks: the owner's row lock already keeps other starts out. Locking every
    # running row at once could deadlock with an accrual locking them in another order;
    # only the rows to stop are locked, one at a time (usually a single one).
    running = list(
        Timesheet.objects.filter(owner_id=owner_id, status=RUNNING).order_by("running_since", "pk")
    )
    excess = max(0, len(running) - limit + 1)
    for other in running[:excess]:
        locked = Timesheet.objects.select_for_update().get(pk=other.pk)
        if locked.status == RUNNING:
            _stop_locked(locked, now=now, reason=Segment.EndReason.REPLACED)
    taken = {other.slot for other in running[excess:]}
    return min(slot for slot in range(1, limit + 1) if slot not in taken)


def _stopped_fields(*, now: datetime, auto_stopped: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "status": STOPPED,
        "accrued_until": None,
        "running_since": None,
        "slot": None,
        "updated_at": now,
    }
    if auto_stopped:
        fields["auto_stopped"] = True
    return fields


def _stop_locked(timesheet: Timesheet, *, now: datetime, reason: Segment.EndReason) -> None:
    """Stop a running timesheet whose row this transaction has locked."""
    assert timesheet.accrued_until is not None
    assert timesheet.running_since is not None
    end = run_end(
        running_since=timesheet.running_since, accrued_until=timesheet.accrued_until, now=now
    )
    if run_reached_limit(running_since=timesheet.running_since, end=end):
        reason = Segment.EndReason.AUTO
    Segment.objects.filter(timesheet_id=timesheet.pk, ended_at__isnull=True).update(
        ended_at=end, end_reason=reason
    )
    Timesheet.objects.filter(pk=timesheet.pk, status=RUNNING).update(
        imputed=F("imputed")
        + _duration(Value(end, output_field=DateTimeField()) - F("accrued_until")),
        **_stopped_fields(now=now, auto_stopped=reason == Segment.EndReason.AUTO),
    )
