"""Every write of the timesheets domain. Views, the admin and the jobs call these functions.

Each takes ``now`` for tests only: production callers pass none, and the time model reads its
one clock (``timesheets.clock``): the database server's on PostgreSQL, in the writing
statement. Time moves from the watermark into ``imputed`` only through set-based statements, so
a row is never read, changed in Python and saved back. Whatever the clocks do, a watermark never
moves back, imputed time never decreases, and a run never starts before the end of the previous
one (``timesheets.backends`` writes it; the database's constraints back it).
"""

from __future__ import annotations

import hashlib
import secrets
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Case, DurationField, F, OuterRef, Q, QuerySet, Subquery, Sum, When
from django.db.models.functions import Coalesce

from timesheets import clock
from timesheets.backends import Batch, RunState, backend
from timesheets.exceptions import (
    CorrectionRefused,
    ProjectCodeTaken,
    ProjectInactive,
    SegmentOverlap,
)
from timesheets.expressions import Elapsed, Latest, Plus, Shift, duration, instant
from timesheets.models import ApiToken, Correction, Project, Segment, Timesheet
from timesheets.policy import max_run_length, max_running_per_user, runs_are_exclusive

logger = structlog.get_logger("timesheets")

RUNNING = Timesheet.Status.RUNNING
STOPPED = Timesheet.Status.STOPPED

ACCRUAL_BATCH = 5000  # timesheets per accrual transaction: a start or stop waits one at most
FORGOTTEN_BATCH = 500  # timesheets per transaction of the forgotten-run job
# Every statement a job sends gives up after these, so that a job blocked by a lock, or by a
# database that stopped answering, never holds up a graceful stop for long.
JOB_LOCK_TIMEOUT = 2.0  # seconds
JOB_STATEMENT_TIMEOUT = 5.0  # seconds

# --- Projects -----------------------------------------------------------------------------


def project_create(
    *, code: str, designation: str, is_active: bool = True, now: datetime | None = None
) -> Project:
    try:
        with transaction.atomic():
            return Project.objects.create(
                code=code,
                designation=designation,
                is_active=is_active,
                created_at=clock.current(now),
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
    now: datetime | None = None,
    start: bool = False,
) -> Timesheet:
    _ensure_active(project)
    with transaction.atomic():
        timesheet = Timesheet.objects.create(
            owner=owner,
            project=project,
            description=description,
            created_at=clock.current(now),
            updated_at=clock.current(now),
        )
        if start:
            timesheet = timesheet_start(timesheet_id=timesheet.pk, owner_id=owner.pk, now=now)
    return timesheet


def timesheet_describe(
    *, timesheet: Timesheet, description: str, now: datetime | None = None
) -> Timesheet:
    """Change what the timesheet is for; its time is not touched."""
    Timesheet.objects.filter(pk=timesheet.pk).update(
        description=description, updated_at=clock.current(now)
    )
    timesheet.refresh_from_db(fields=["description", "updated_at"])
    return timesheet


def timesheet_start(
    *, timesheet_id: int, owner_id: int | None = None, now: datetime | None = None
) -> Timesheet:
    """Start the timesheet's clock; return it. Starting a running timesheet changes nothing.

    With ``owner_id``, only that person's timesheet is started (``Timesheet.DoesNotExist``
    otherwise). Under a per-person limit, the owner's longest-running timesheets are stopped
    (end reason ``replaced``) until this one fits, in the same transaction. The run starts now,
    but never before the end of a run it must follow.
    """
    with transaction.atomic():
        if owner_id is None:
            owner_id = Timesheet.objects.values_list("owner_id", flat=True).get(pk=timesheet_id)
        # Starts of one person are serialised on their user row, so that two concurrent
        # starts cannot both see a free slot. (SQLite serialises every write transaction.)
        list(
            get_user_model()
            .objects.select_for_update(no_key=True)
            .filter(pk=owner_id)
            .values_list("pk", flat=True)
        )
        # This timesheet and the person's running ones, locked, so that the next statement
        # (which reads afresh) sees every stop of them that committed meanwhile.
        locked = {
            other.pk: other
            for other in _locked(now).filter(
                Q(pk=timesheet_id) | Q(status=RUNNING), owner_id=owner_id
            )
        }
        if timesheet_id not in locked:
            raise Timesheet.DoesNotExist(f"No timesheet with id {timesheet_id}.")
        current = locked.pop(timesheet_id)
        if current.status == RUNNING:
            return current
        _ensure_active(current.project)
        replace, slot = _make_room(running=list(locked.values()), limit=max_running_per_user())
        state = backend().start(
            timesheet_id=current.pk,
            owner_id=current.owner_id,
            replace=replace,
            slot=slot,
            exclusive=runs_are_exclusive(),
            now=now,
            max_run=max_run_length(),
        )
    return _applied(current, state)


def timesheet_stop(
    *,
    timesheet_id: int,
    owner_id: int | None = None,
    now: datetime | None = None,
    reason: Segment.EndReason = Segment.EndReason.USER,
) -> Timesheet:
    """Stop the timesheet; return it. Stopping a stopped timesheet is a successful no-op.

    With ``owner_id``, only that person's timesheet is stopped (``Timesheet.DoesNotExist``
    otherwise). The run ends now, but never past the maximum run length (it is then flagged
    for review) and never before its watermark.
    """
    with transaction.atomic():
        # Locked first, so that the stop (the next statement, which reads afresh) sees the run
        # of a start that committed meanwhile.
        timesheets = _locked(now)
        if owner_id is not None:
            timesheets = timesheets.filter(owner_id=owner_id)
        current = timesheets.get(pk=timesheet_id)
        if current.status != RUNNING:
            return current
        state = backend().stop(
            timesheet_id=timesheet_id, reason=reason, now=now, max_run=max_run_length()
        )
    return _applied(current, state)


def timesheet_accrue_running(
    *, now: datetime | None = None, batch_size: int = ACCRUAL_BATCH
) -> int:
    """Accrue every running timesheet up to now, a batch at a time; return the rows advanced.

    Only rows whose watermark is behind now move, so any number of processes may run this at
    once and every second is still counted exactly once; batches lock rows in id order and skip
    those another transaction holds, so accruing processes never wait for each other nor for a
    start or stop, and a start or stop waits for one batch at most.
    """
    moved, after = 0, 0
    while (batch := _accrue_batch(after_id=after, size=batch_size, now=now)).last_id is not None:
        moved += batch.moved
        after = batch.last_id
    return moved


async def timesheet_aaccrue_running(
    *, now: datetime | None = None, batch_size: int = ACCRUAL_BATCH
) -> int:
    """``timesheet_accrue_running`` driven from the event loop, one database call per batch."""
    moved, after = 0, 0
    while True:
        batch = await sync_to_async(_accrue_batch)(after_id=after, size=batch_size, now=now)
        if batch.last_id is None:
            return moved
        moved += batch.moved
        after = batch.last_id


def timesheet_stop_forgotten(*, now: datetime | None = None) -> int:
    """Stop every run that has reached the maximum run length, at exactly that length.

    A run that has already accrued more (the limit was lowered since) stops at its watermark:
    time already counted stays counted. Either way it is flagged for review. Works in short
    transactions over batches locked with SKIP LOCKED, so that several processes share the
    work and none waits for a row another is stopping. Returns the number stopped.
    """
    limit = max_run_length()
    if limit is None:
        return 0
    stopped = 0
    while True:
        with _job_transaction():
            ids = list(
                Timesheet.objects.select_for_update(skip_locked=True, no_key=True)
                .filter(
                    status=RUNNING,
                    running_since__lte=Shift(clock.current(now), duration(-limit)),
                )
                .order_by("pk")
                .values_list("pk", flat=True)[:FORGOTTEN_BATCH]
            )
            if not ids:
                return stopped
            watermark = Timesheet.objects.filter(pk=OuterRef("timesheet_id")).values(
                "accrued_until"
            )
            Segment.objects.filter(timesheet_id__in=ids, ended_at__isnull=True).update(
                ended_at=Latest(Subquery(watermark), Shift(F("started_at"), duration(limit))),
                end_reason=Segment.EndReason.AUTO,
            )
            end = Latest(F("accrued_until"), Shift(F("running_since"), duration(limit)))
            stopped += Timesheet.objects.filter(pk__in=ids, status=RUNNING).update(
                imputed=Plus(F("imputed"), Elapsed(end, F("accrued_until"))),
                status=STOPPED,
                accrued_until=None,
                running_since=None,
                slot=None,
                auto_stopped=True,
                updated_at=clock.current(now),
            )
        if len(ids) < FORGOTTEN_BATCH:
            return stopped


# --- Corrections ----------------------------------------------------------------------------
#
# Runs added, changed or deleted by hand. Each service locks the person, then the timesheet (as
# a start does, so that no run of theirs can appear meanwhile), checks the change against the
# time model (no run ends before it starts or after now, none overlaps another run of the
# timesheet, nor under a per-person limit of 1 another run of the person), writes it, sets
# imputed to the sum of the runs, and records who changed what, all in one transaction.


def segment_add(
    *,
    timesheet_id: int,
    started_at: datetime,
    ended_at: datetime,
    actor: User,
    owner_id: int | None = None,
    now: datetime | None = None,
) -> Segment:
    """Add a finished run to a timesheet; return it."""
    with transaction.atomic():
        timesheet = _lock_for_correction(timesheet_id=timesheet_id, owner_id=owner_id)
        at = clock.read(now)
        _check_run(timesheet, started_at=started_at, ended_at=ended_at, now=at)
        segment = Segment.objects.create(
            timesheet_id=timesheet.pk,
            owner_id=timesheet.owner_id,
            exclusive=runs_are_exclusive(),
            started_at=started_at,
            ended_at=ended_at,
            end_reason=Segment.EndReason.MANUAL,
        )
        _impute_runs(timesheet.pk, now=now)
        _record(
            Correction.Action.SEGMENT_ADDED,
            timesheet_id=timesheet.pk,
            segment=segment,
            actor=actor,
            at=at,
            after=_segment_record(segment),
        )
    return segment


def segment_change(
    *,
    segment_id: int,
    actor: User,
    started_at: datetime | None = None,
    ended_at: datetime | None = None,
    owner_id: int | None = None,
    now: datetime | None = None,
) -> Segment:
    """Move a run's start or end; return the run.

    The start of a running timesheet's open run may move: the run then counts from there (its
    watermark never before it). Its end cannot be set while it runs: stop it instead.
    """
    with transaction.atomic():
        segment, timesheet = _lock_segment(segment_id=segment_id, owner_id=owner_id)
        at = clock.read(now)
        before = _segment_record(segment)
        if segment.ended_at is None and ended_at is not None:
            raise CorrectionRefused(
                "This run is still running: stop the timer to end it, then change its end."
            )
        new_start = segment.started_at if started_at is None else started_at
        new_end = segment.ended_at if ended_at is None else ended_at
        _check_run(timesheet, started_at=new_start, ended_at=new_end, now=at, other_than=segment)
        Segment.objects.filter(pk=segment.pk).update(started_at=new_start, ended_at=new_end)
        if new_end is None:
            # The open run of a running timesheet: its run starts there now.
            Timesheet.objects.filter(pk=timesheet.pk).update(
                running_since=new_start,
                accrued_until=Latest(F("accrued_until"), instant(new_start)),
            )
        _impute_runs(timesheet.pk, now=now)
        segment.refresh_from_db()
        _record(
            Correction.Action.SEGMENT_CHANGED,
            timesheet_id=timesheet.pk,
            segment=segment,
            actor=actor,
            at=at,
            before=before,
            after=_segment_record(segment),
        )
    return segment


def segment_delete(
    *, segment_id: int, actor: User, owner_id: int | None = None, now: datetime | None = None
) -> None:
    """Delete a finished run."""
    with transaction.atomic():
        segment, timesheet = _lock_segment(segment_id=segment_id, owner_id=owner_id)
        if segment.ended_at is None:
            raise CorrectionRefused(
                "This run is still running: stop the timer first, then delete the run."
            )
        at = clock.read(now)
        before = _segment_record(segment)
        segment.delete()
        _impute_runs(timesheet.pk, now=now)
        _record(
            Correction.Action.SEGMENT_DELETED,
            timesheet_id=timesheet.pk,
            segment_id=segment_id,
            actor=actor,
            at=at,
            before=before,
        )


def timesheet_delete(
    *, timesheet_id: int, actor: User, owner_id: int | None = None, now: datetime | None = None
) -> None:
    """Delete an entry and its runs; a running one is stopped first. The record stays."""
    with transaction.atomic():
        timesheet = _lock_for_correction(timesheet_id=timesheet_id, owner_id=owner_id)
        if timesheet.status == RUNNING:
            timesheet = timesheet_stop(timesheet_id=timesheet.pk, now=now)
        at = clock.read(now)
        before = {
            "id": timesheet.pk,
            "owner_id": timesheet.owner_id,
            "project_id": timesheet.project_id,
            "description": timesheet.description,
            "imputed_seconds": timesheet.imputed.total_seconds(),
            "segments": [_segment_record(run) for run in timesheet.segments.order_by("pk")],
        }
        _record(
            Correction.Action.TIMESHEET_DELETED,
            timesheet_id=timesheet.pk,
            actor=actor,
            at=at,
            before=before,
        )
        timesheet.delete()


def timesheet_review(
    *, timesheet_id: int, actor: User, owner_id: int | None = None, now: datetime | None = None
) -> Timesheet:
    """Mark an entry stopped at the maximum run length as reviewed; return it."""
    with transaction.atomic():
        timesheet = _lock_for_correction(timesheet_id=timesheet_id, owner_id=owner_id)
        at = clock.read(now)
        if timesheet.auto_stopped:
            Timesheet.objects.filter(pk=timesheet.pk).update(auto_stopped=False)
            _record(
                Correction.Action.REVIEWED,
                timesheet_id=timesheet.pk,
                actor=actor,
                at=at,
                before={"auto_stopped": True},
                after={"auto_stopped": False},
            )
            timesheet.auto_stopped = False
        timesheet.read_at = at
    return timesheet


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


def _job_transaction(*, durable: bool = True) -> AbstractContextManager[None]:
    """A transaction of a job's, each statement of which gives up after the job timeouts."""
    return backend().job_transaction(
        lock_timeout=JOB_LOCK_TIMEOUT, statement_timeout=JOB_STATEMENT_TIMEOUT, durable=durable
    )


def _accrue_batch(*, after_id: int, size: int, now: datetime | None) -> Batch:
    # An accrual lost to a crash is redone by the next one: its commits need not wait.
    with _job_transaction(durable=False):
        return backend().accrue_batch(
            after_id=after_id, size=size, now=now, max_run=max_run_length()
        )


def _ensure_active(project: Project) -> None:
    if not project.is_active:
        raise ProjectInactive(
            f"Project {project.code!r} is archived; time can only be recorded on active projects."
        )


def _make_room(*, running: list[Timesheet], limit: int) -> tuple[list[int], int | None]:
    """Which of the owner's running timesheets a new run replaces, and the slot it takes.

    Under a limit the longest-running ones make room (the most recently started stay); the new
    run takes the lowest slot the remaining ones leave free. No limit: nothing is replaced.
    """
    if limit == 0:
        return [], None
    newest_first = sorted(running, key=lambda other: (other.running_since, other.pk), reverse=True)
    staying, leaving = newest_first[: limit - 1], newest_first[limit - 1 :]
    taken = {other.slot for other in staying}
    slot = min(number for number in range(1, limit + 1) if number not in taken)
    return [other.pk for other in leaving], slot


def _locked(now: datetime | None) -> QuerySet[Timesheet]:
    """Timesheets with their project, locked for this transaction, stamped with the clock."""
    return (
        Timesheet.objects.select_for_update(of=("self",), no_key=True)
        .select_related("project")
        .annotate(read_at=clock.current(now))  # type: ignore[no-redef]
    )


def _lock_for_correction(*, timesheet_id: int, owner_id: int | None) -> Timesheet:
    """Lock the timesheet's owner, then the timesheet, as a start does; return it."""
    owners = Timesheet.objects.filter(pk=timesheet_id)
    if owner_id is not None:
        owners = owners.filter(owner_id=owner_id)
    owner = owners.values_list("owner_id", flat=True).first()
    if owner is None:
        raise Timesheet.DoesNotExist(f"No timesheet with id {timesheet_id}.")
    list(
        get_user_model()
        .objects.select_for_update(no_key=True)
        .filter(pk=owner)
        .values_list("pk", flat=True)
    )
    return _locked(None).get(pk=timesheet_id)


def _lock_segment(*, segment_id: int, owner_id: int | None) -> tuple[Segment, Timesheet]:
    runs = Segment.objects.filter(pk=segment_id)
    if owner_id is not None:
        runs = runs.filter(owner_id=owner_id)
    timesheet_id = runs.values_list("timesheet_id", flat=True).first()
    if timesheet_id is None:
        raise Segment.DoesNotExist(f"No run with id {segment_id}.")
    timesheet = _lock_for_correction(timesheet_id=timesheet_id, owner_id=owner_id)
    return Segment.objects.get(pk=segment_id), timesheet


def _check_run(
    timesheet: Timesheet,
    *,
    started_at: datetime,
    ended_at: datetime | None,
    now: datetime,
    other_than: Segment | None = None,
) -> None:
    """Refuse a run that ends before it starts, lies in the future, or overlaps another."""
    for moment in (started_at, ended_at):
        if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
            raise CorrectionRefused("Give times with their time zone (for instance 'Z' for UTC).")
    if ended_at is not None and ended_at <= started_at:
        raise CorrectionRefused(
            f"A run must end after it starts: {_moment(ended_at)} is not after "
            f"{_moment(started_at)}."
        )
    latest = started_at if ended_at is None else ended_at
    if latest > now:
        raise CorrectionRefused(
            f"A run cannot lie in the future: {_moment(latest)} is after now, {_moment(now)}."
        )
    scope = Q(timesheet_id=timesheet.pk)
    if runs_are_exclusive():
        scope |= Q(owner_id=timesheet.owner_id)
    overlapping = Segment.objects.filter(scope).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gt=started_at)
    )
    if ended_at is not None:
        overlapping = overlapping.filter(started_at__lt=ended_at)
    if other_than is not None:
        overlapping = overlapping.exclude(pk=other_than.pk)
    other = overlapping.select_related("timesheet__project").order_by("started_at").first()
    if other is not None:
        entry = other.timesheet.description or other.timesheet.project.code
        until = "now (it is running)" if other.ended_at is None else _moment(other.ended_at)
        raise SegmentOverlap(
            f"This run would overlap run {other.pk} of entry {other.timesheet_id} "
            f"({entry!r}), from {_moment(other.started_at)} to {until}.",
            timesheet_id=other.timesheet_id,
            segment_id=other.pk,
        )


def _moment(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _impute_runs(timesheet_id: int, *, now: datetime | None) -> None:
    """Set imputed to the sum of the timesheet's runs: the finished ones, and the open one up
    to its watermark."""
    finished = (
        Segment.objects.filter(timesheet_id=OuterRef("pk"), ended_at__isnull=False)
        .values("timesheet_id")
        .annotate(total=Sum(Elapsed(F("ended_at"), F("started_at"))))
        .values("total")
    )
    open_run = Case(
        When(status=RUNNING, then=Elapsed(F("accrued_until"), F("running_since"))),
        default=duration(timedelta(0)),
        output_field=DurationField(),
    )
    Timesheet.objects.filter(pk=timesheet_id).update(
        imputed=Plus(
            Coalesce(Subquery(finished), duration(timedelta(0)), output_field=DurationField()),
            open_run,
        ),
        updated_at=clock.current(now),
    )


def _segment_record(segment: Segment) -> dict[str, Any]:
    return {
        "id": segment.pk,
        "timesheet_id": segment.timesheet_id,
        "started_at": _moment(segment.started_at),
        "ended_at": None if segment.ended_at is None else _moment(segment.ended_at),
        "end_reason": segment.end_reason,
    }


def _record(
    action: Correction.Action,
    *,
    timesheet_id: int,
    actor: User,
    at: datetime,
    segment: Segment | None = None,
    segment_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    Correction.objects.create(
        timesheet_id=timesheet_id,
        segment_id=segment.pk if segment is not None else segment_id,
        actor=actor,
        recorded_at=at,
        action=action,
        before=before,
        after=after,
    )
    logger.info(
        "time_corrected",
        action=str(action),
        timesheet_id=timesheet_id,
        segment_id=segment.pk if segment is not None else segment_id,
        actor_id=actor.pk,
    )


def _applied(timesheet: Timesheet, state: RunState) -> Timesheet:
    """The timesheet with the state a write left; it keeps the relations it has loaded."""
    timesheet.status = state.status
    timesheet.imputed = state.imputed
    timesheet.accrued_until = state.accrued_until
    timesheet.running_since = state.running_since
    timesheet.slot = state.slot
    timesheet.auto_stopped = state.auto_stopped
    timesheet.updated_at = state.updated_at
    timesheet.read_at = state.read_at
    return timesheet
