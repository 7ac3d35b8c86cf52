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
from django.db.models import (
    Case,
    DurationField,
    F,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    When,
)
from django.db.models.functions import Coalesce

from events.models import Event
from events.services import NewEvent, event_record
from timesheets import clock
from timesheets.backends import Ending, Opening, backend, batch_ends
from timesheets.exceptions import (
    CorrectionRefused,
    ProjectCodeTaken,
    ProjectInactive,
    SegmentOverlap,
)
from timesheets.expressions import Elapsed, Latest, Plus, Shift, duration, instant
from timesheets.models import ApiToken, Correction, Profile, Project, Segment, Timesheet
from timesheets.policy import (
    max_run_length,
    max_running_per_user,
    run_end,
    run_reached_limit,
    runs_are_exclusive,
)
from timesheets.schemas import project_json, timesheet_json

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
    *,
    code: str,
    designation: str,
    is_active: bool = True,
    actor_id: int | None = None,
    now: datetime | None = None,
) -> Project:
    try:
        with transaction.atomic():
            project = Project.objects.create(
                code=code,
                designation=designation,
                is_active=is_active,
                created_at=clock.current(now),
            )
            event_record(
                events=[
                    NewEvent(
                        type=Event.Type.PROJECT_CREATED,
                        owner_id=None,
                        timesheet_id=None,
                        data=project_json(project),
                    )
                ],
                actor_id=actor_id,
                occurred_at=project.created_at,
            )
            return project
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
    actor_id: int | None = None,
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
        timesheet.read_at = timesheet.created_at
        _record_events(
            [_timesheet_event(Event.Type.TIMESHEET_CREATED, timesheet)],
            actor_id=owner.pk if actor_id is None else actor_id,
            at=timesheet.created_at,
        )
        if start:
            timesheet = timesheet_start(
                timesheet_id=timesheet.pk, owner_id=owner.pk, actor_id=actor_id, now=now
            )
    return timesheet


def timesheet_describe(
    *,
    timesheet: Timesheet,
    description: str,
    actor_id: int | None = None,
    now: datetime | None = None,
) -> Timesheet:
    """Change what the timesheet is for; its time is not touched."""
    with transaction.atomic():
        current = _locked(now).get(pk=timesheet.pk)
        Timesheet.objects.filter(pk=current.pk).update(
            description=description, updated_at=current.read_at
        )
        assert current.read_at is not None
        current.description, current.updated_at = description, current.read_at
        _record_events(
            [_timesheet_event(Event.Type.TIMESHEET_UPDATED, current)],
            actor_id=current.owner_id if actor_id is None else actor_id,
            at=current.read_at,
        )
    timesheet.description, timesheet.updated_at = description, current.updated_at
    return timesheet


def timesheet_start(
    *,
    timesheet_id: int,
    owner_id: int | None = None,
    actor_id: int | None = None,
    now: datetime | None = None,
) -> Timesheet:
    """Start the timesheet's clock; return it. Starting a running timesheet changes nothing.

    With ``owner_id``, only that person's timesheet is started (``Timesheet.DoesNotExist``
    otherwise); ``actor_id`` is who does it (its owner unless said otherwise). Under a
    per-person limit, the owner's longest-running timesheets are stopped (end reason
    ``replaced``) until this one fits, in the same transaction. The run starts now, but never
    before the end of a run it must follow, whatever the clocks did.
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
        # This timesheet and the person's running ones, locked: the statements after this one
        # see every stop of them that committed while it waited.
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
        at = current.read_at
        assert at is not None
        max_run = max_run_length()
        replace, slot = _make_room(running=list(locked.values()), limit=max_running_per_user())
        endings = [
            _ending(locked[pk], at=at, reason=Segment.EndReason.REPLACED, max_run=max_run)
            for pk in replace
        ]
        exclusive = runs_are_exclusive()
        # Never before the end of this timesheet's last run, nor of the runs it replaces, nor,
        # when the person's runs must not overlap, of any run of theirs: clocks may disagree or
        # step back, and this transaction's reading may be older than another's commit.
        earlier = Q(timesheet_id=timesheet_id) | (Q(owner_id=owner_id) if exclusive else Q())
        last_end = Segment.objects.filter(earlier).aggregate(last=Max("ended_at"))["last"]
        begin = max(
            [at, *(ending.ended_at for ending in endings)] + ([last_end] if last_end else [])
        )
        started = _with_state(
            current,
            status=RUNNING,
            accrued_until=begin,
            running_since=begin,
            slot=slot,
            updated_at=at,
            read_at=at,
        )
        events = [
            _stop_event(_after_ending(locked[ending.timesheet_id], ending, at=at), ending)
            for ending in endings
        ]
        events.append(_timesheet_event(Event.Type.TIMESHEET_STARTED, started))
        backend().write_runs(
            endings=endings,
            opening=Opening(
                timesheet_id=current.pk,
                owner_id=owner_id,
                started_at=begin,
                slot=slot,
                exclusive=exclusive,
            ),
            at=at,
            events=events,
            actor_id=owner_id if actor_id is None else actor_id,
        )
    return started


def timesheet_stop(
    *,
    timesheet_id: int,
    owner_id: int | None = None,
    actor_id: int | None = None,
    now: datetime | None = None,
    reason: Segment.EndReason = Segment.EndReason.USER,
) -> Timesheet:
    """Stop the timesheet; return it. Stopping a stopped timesheet is a successful no-op.

    With ``owner_id``, only that person's timesheet is stopped (``Timesheet.DoesNotExist``
    otherwise). The run ends now, but never past the maximum run length (it is then flagged
    for review) and never before its watermark.
    """
    with transaction.atomic():
        timesheets = _locked(now)
        if owner_id is not None:
            timesheets = timesheets.filter(owner_id=owner_id)
        current = timesheets.get(pk=timesheet_id)
        if current.status != RUNNING:
            return current
        at = current.read_at
        assert at is not None
        ending = _ending(current, at=at, reason=reason, max_run=max_run_length())
        stopped = _after_ending(current, ending, at=at)
        backend().write_runs(
            endings=[ending],
            opening=None,
            at=at,
            events=[_stop_event(stopped, ending)],
            actor_id=current.owner_id if actor_id is None else actor_id,
        )
    return stopped


def timesheet_accrue_running(
    *, now: datetime | None = None, batch_size: int = ACCRUAL_BATCH
) -> int:
    """Accrue every running timesheet up to now, a batch at a time; return the rows advanced.

    The batches are ranges of ids, each holding ``batch_size`` of the timesheets running when
    the accrual begins, read once by one statement, then moved one range per transaction in id
    order. Only rows whose watermark is behind now move, so any number of processes may run
    this at once and every second is still counted exactly once; a batch skips the rows another
    transaction holds (on PostgreSQL after a millisecond's wait, see the backend), so accruing
    processes never wait for each other nor for a start or stop, and a start or stop waits for
    one batch at most. A timesheet started during the accrual above the last range has accrued
    next to nothing: the next accrual takes it.
    """
    moved, after = 0, 0
    for last in _accrual_batches(size=batch_size):
        moved += _accrue_range(after_id=after, last_id=last, now=now)
        after = last
    return moved


async def timesheet_aaccrue_running(
    *, now: datetime | None = None, batch_size: int = ACCRUAL_BATCH
) -> int:
    """``timesheet_accrue_running`` driven from the event loop, one database call per batch."""
    moved, after = 0, 0
    for last in await sync_to_async(_accrual_batches)(size=batch_size):
        moved += await sync_to_async(_accrue_range)(after_id=after, last_id=last, now=now)
        after = last
    return moved


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
            forgotten = list(
                _locked(now, skip_locked=True)
                .filter(
                    status=RUNNING,
                    running_since__lte=Shift(clock.current(now), duration(-limit)),
                )
                .order_by("pk")[:FORGOTTEN_BATCH]
            )
            if not forgotten:
                return stopped
            at = forgotten[0].read_at
            assert at is not None
            endings = [
                _ending(timesheet, at=at, reason=Segment.EndReason.AUTO, max_run=limit)
                for timesheet in forgotten
            ]
            backend().write_runs(
                endings=endings,
                opening=None,
                at=at,
                events=[
                    _stop_event(_after_ending(timesheet, ending, at=at), ending)
                    for timesheet, ending in zip(forgotten, endings, strict=True)
                ],
                actor_id=None,
            )
            stopped += len(endings)
        if len(forgotten) < FORGOTTEN_BATCH:
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
        timesheet.read_at = at
        before = {
            **timesheet_json(timesheet),
            "owner_id": timesheet.owner_id,
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


def api_token_revoke(*, user: User, token_id: int, now: datetime) -> ApiToken:
    """Make one of the person's tokens expire now (``ApiToken.DoesNotExist`` if not theirs).

    The record stays, so that its use can still be traced; a token already expired keeps its
    expiry.
    """
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().get(pk=token_id, user=user)
        if token.expires_at is None or token.expires_at > now:
            token.expires_at = now
            token.save(update_fields=["expires_at"])
    logger.info("api_token_revoked", token_id=token.pk, user_id=user.pk)
    return token


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


# --- Profiles -----------------------------------------------------------------------------


def profile_set_time_zone(*, user: User, time_zone: str) -> Profile:
    """Set the time zone the person's pages show times in (an IANA name; empty: the
    service's)."""
    profile, _ = Profile.objects.update_or_create(user=user, defaults={"time_zone": time_zone})
    return profile


def api_token_mark_used(*, token: ApiToken, now: datetime) -> None:
    """``api_token_amark_used`` for synchronous callers."""
    if token.last_used_at is None or now - token.last_used_at >= TOKEN_TOUCH_INTERVAL:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now


# --- Internals ----------------------------------------------------------------------------


def _job_transaction(*, durable: bool = True) -> AbstractContextManager[None]:
    """A transaction of a job's, each statement of which gives up after the job timeouts."""
    return backend().job_transaction(
        lock_timeout=JOB_LOCK_TIMEOUT, statement_timeout=JOB_STATEMENT_TIMEOUT, durable=durable
    )


def _accrual_batches(*, size: int) -> list[int]:
    """The last id of each batch of ``size`` running timesheets, in id order."""
    with _job_transaction():
        return batch_ends(size=size)


def _accrue_range(*, after_id: int, last_id: int, now: datetime | None) -> int:
    return backend().accrue_range(
        after_id=after_id,
        last_id=last_id,
        now=now,
        max_run=max_run_length(),
        lock_timeout=JOB_LOCK_TIMEOUT,
        statement_timeout=JOB_STATEMENT_TIMEOUT,
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


def _locked(now: datetime | None, *, skip_locked: bool = False) -> QuerySet[Timesheet]:
    """Timesheets with their project, locked for this transaction, stamped with the time
    model's clock read by the same statement."""
    return (
        Timesheet.objects.select_for_update(of=("self",), no_key=True, skip_locked=skip_locked)
        .select_related("project")
        .annotate(read_at=clock.current(now))  # type: ignore[no-redef]
    )


def _ending(
    timesheet: Timesheet, *, at: datetime, reason: str, max_run: timedelta | None
) -> Ending:
    """Where a running timesheet's run ends if it stops at ``at``, and its time once it has."""
    assert timesheet.accrued_until is not None
    assert timesheet.running_since is not None
    end = run_end(
        running_since=timesheet.running_since,
        accrued_until=timesheet.accrued_until,
        now=at,
        max_run=max_run,
    )
    auto = run_reached_limit(running_since=timesheet.running_since, end=end, max_run=max_run)
    return Ending(
        timesheet_id=timesheet.pk,
        ended_at=end,
        reason=Segment.EndReason.AUTO if auto else reason,
        imputed=timesheet.imputed + (end - timesheet.accrued_until),
        auto=auto,
    )


def _after_ending(timesheet: Timesheet, ending: Ending, *, at: datetime) -> Timesheet:
    return _with_state(
        timesheet,
        status=STOPPED,
        imputed=ending.imputed,
        accrued_until=None,
        running_since=None,
        slot=None,
        auto_stopped=timesheet.auto_stopped or ending.auto,
        updated_at=at,
        read_at=at,
    )


def _with_state(timesheet: Timesheet, **state: Any) -> Timesheet:
    """The timesheet with new values for its time fields (the caller's instance is changed)."""
    for name, value in state.items():
        setattr(timesheet, name, value)
    return timesheet


def _timesheet_event(type: Event.Type, timesheet: Timesheet) -> NewEvent:
    return NewEvent(
        type=type,
        owner_id=timesheet.owner_id,
        timesheet_id=timesheet.pk,
        data={"timesheet": timesheet_json(timesheet)},
    )


def _stop_event(timesheet: Timesheet, ending: Ending) -> NewEvent:
    event = _timesheet_event(
        Event.Type.TIMESHEET_AUTO_STOPPED if ending.auto else Event.Type.TIMESHEET_STOPPED,
        timesheet,
    )
    event.data["end_reason"] = ending.reason
    return event


def _record_events(events: list[NewEvent], *, actor_id: int | None, at: datetime) -> None:
    event_record(events=events, actor_id=actor_id, occurred_at=at)


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


CORRECTION_EVENTS = {
    Correction.Action.SEGMENT_ADDED: Event.Type.SEGMENT_CREATED,
    Correction.Action.SEGMENT_CHANGED: Event.Type.SEGMENT_UPDATED,
    Correction.Action.SEGMENT_DELETED: Event.Type.SEGMENT_DELETED,
    Correction.Action.TIMESHEET_DELETED: Event.Type.TIMESHEET_DELETED,
    Correction.Action.REVIEWED: Event.Type.TIMESHEET_REVIEWED,
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
    """Record the correction, and its event with the entry's new state."""
    segment_id = segment.pk if segment is not None else segment_id
    correction = Correction.objects.create(
        timesheet_id=timesheet_id,
        segment_id=segment_id,
        actor=actor,
        recorded_at=at,
        action=action,
        before=before,
        after=after,
    )
    data: dict[str, Any]
    if action == Correction.Action.TIMESHEET_DELETED:
        assert before is not None
        owner_id, data = before["owner_id"], {"timesheet": before}
    else:
        timesheet = Timesheet.objects.select_related("project").get(pk=timesheet_id)
        timesheet.read_at = at
        owner_id, data = timesheet.owner_id, {"timesheet": timesheet_json(timesheet)}
    if segment_id is not None:
        data["segment"] = after if after is not None else before
    data["correction"] = {"id": correction.pk, "before": before, "after": after}
    _record_events(
        [
            NewEvent(
                type=CORRECTION_EVENTS[action],
                owner_id=owner_id,
                timesheet_id=timesheet_id,
                data=data,
            )
        ],
        actor_id=actor.pk,
        at=at,
    )
    logger.info(
        "time_corrected",
        action=str(action),
        timesheet_id=timesheet_id,
        segment_id=segment_id,
        actor_id=actor.pk,
    )
