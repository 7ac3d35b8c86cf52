"""Concurrent writers, each on its own connection, as concurrent requests would be."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from tests.conftest import T0, at
from tests.invariants import assert_invariants
from tests.processes import timesheets_locked
from tests.sessions import session_of
from timesheets import services
from timesheets.exceptions import DatabaseBusy, SegmentOverlap
from timesheets.jobs import accrue_running_timesheets
from timesheets.models import Project, Segment, Timesheet
from timesheets.services import (
    IssuedToken,
    api_token_create,
    segment_add,
    timesheet_accrue_running,
    timesheet_create,
    timesheet_start,
    timesheet_stop,
    timesheet_stop_forgotten,
)
from worker.exceptions import JobDeferred

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("settings_limits")]

STARTS = 50


def test_fifty_concurrent_starts_for_one_person_leave_exactly_one_running(
    alice: User, project: Project
) -> None:
    timesheets = [
        timesheet_create(owner=alice, project=project, description=f"{n}", now=timezone.now())
        for n in range(STARTS)
    ]
    barrier = threading.Barrier(STARTS)

    def start(timesheet: Timesheet) -> None:
        try:
            barrier.wait()
            timesheet_start(timesheet_id=timesheet.pk, now=timezone.now())
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=STARTS) as pool:
        list(pool.map(start, timesheets))

    assert Timesheet.objects.filter(status=Timesheet.Status.RUNNING).count() == 1
    assert Segment.objects.count() == STARTS, "every start opened a run"
    replaced = Segment.objects.filter(end_reason=Segment.EndReason.REPLACED).count()
    assert replaced == STARTS - 1, "and every start but the last replaced the one before"
    assert_invariants(now=timezone.now())


def test_starts_under_a_limit_of_two_and_a_busy_accrual_never_deadlock(
    alice: User, bob: User, project: Project, settings: Any
) -> None:
    settings.TIMESHEETS_MAX_RUNNING_PER_USER = 2
    timesheets = [
        timesheet_create(owner=owner, project=project, description=f"{n}", now=timezone.now())
        for owner in (alice, bob)
        for n in range(10)
    ]
    done = threading.Event()
    errors: list[BaseException] = []

    def accrue_until_done() -> None:
        try:
            while not done.is_set():
                timesheet_accrue_running(now=timezone.now())
        except Exception as error:  # noqa: BLE001  (asserted empty below)
            errors.append(error)
        finally:
            connection.close()

    def start_all(mine: list[Timesheet]) -> None:
        try:
            for _ in range(5):
                for timesheet in mine:
                    timesheet_start(timesheet_id=timesheet.pk, now=timezone.now())
        except Exception as error:  # noqa: BLE001  (asserted empty below)
            errors.append(error)
        finally:
            connection.close()

    accruer = threading.Thread(target=accrue_until_done)
    accruer.start()
    starters = [threading.Thread(target=start_all, args=(timesheets[half::2],)) for half in (0, 1)]
    for starter in starters:
        starter.start()
    for starter in starters:
        starter.join()
    done.set()
    accruer.join()

    assert errors == []
    assert_invariants(now=timezone.now(), max_running_per_user=2)


RACES = 40


@pytest.mark.postgresql
def test_stops_racing_replacing_starts_on_one_row_keep_every_invariant(
    alice: User, project: Project
) -> None:
    """A stop and a start that replaces the same running timesheet, at the same moment.

    The start locks its person, then the person's running timesheets; the stop locks the one
    timesheet. Whichever wins, the loser sees what it did: the run ends once, with one reason,
    and the next run starts no earlier.
    """
    first, second = (
        timesheet_create(owner=alice, project=project, description=name, now=timezone.now())
        for name in ("first", "second")
    )
    errors: list[BaseException] = []
    reasons: Counter[str] = Counter()

    def race(action: Callable[[], object], barrier: threading.Barrier) -> None:
        try:
            barrier.wait()
            action()
        except Exception as error:  # noqa: BLE001  (asserted empty below)
            errors.append(error)
        finally:
            connection.close()

    for _ in range(RACES):
        timesheet_stop(timesheet_id=second.pk)
        timesheet_start(timesheet_id=first.pk)
        barrier = threading.Barrier(2)
        racers = [
            threading.Thread(
                target=race, args=(lambda: timesheet_stop(timesheet_id=first.pk), barrier)
            ),
            threading.Thread(
                target=race, args=(lambda: timesheet_start(timesheet_id=second.pk), barrier)
            ),
        ]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join()
        ended = Segment.objects.filter(timesheet=first).order_by("-started_at").first()
        assert ended is not None
        reasons[ended.end_reason] += 1

    assert errors == []
    assert sum(reasons.values()) == RACES
    assert set(reasons) <= {Segment.EndReason.USER, Segment.EndReason.REPLACED}
    assert_invariants(now=timezone.now())


@pytest.mark.postgresql
def test_the_accrual_skips_a_row_another_transaction_holds(
    make_user: Callable[[str], User], project: Project
) -> None:
    import psycopg

    from tests import processes

    held, free = (
        timesheet_create(
            owner=make_user(name), project=project, description="", now=timezone.now(), start=True
        )
        for name in ("held", "free")
    )
    seen: list[tuple[str, dict[str, str]]] = []

    def observed(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.split(None, 1)[0].upper() in {"WITH", "UPDATE"}:
            seen.append(
                (sql.split(None, 1)[0].upper(), session_of(context["connection"].connection))
            )
        return execute(sql, params, many, context)

    with psycopg.connect(processes.test_database_url()) as other:
        other.execute("SELECT 1 FROM timesheets_timesheet WHERE id = %s FOR UPDATE", [held.pk])

        # Had it waited for the row, the job's lock timeout would have raised.
        with connection.execute_wrapper(observed):
            assert timesheet_accrue_running() == 1
        job = {"lock_timeout": "2s", "statement_timeout": "5s", "synchronous_commit": "on"}
        assert seen == [
            ("WITH", job),
            ("UPDATE", {**job, "lock_timeout": "1ms", "synchronous_commit": "off"}),
            ("WITH", {**job, "synchronous_commit": "off"}),
        ], "the batches' ends; the range, given up after a millisecond; then locked around the row"
        assert Timesheet.objects.get(pk=held.pk).accrued_until == held.accrued_until
        assert Timesheet.objects.get(pk=free.pk).accrued_until > free.accrued_until  # type: ignore[operator]
        assert lockers(free.pk) != ["0"], "the batch locked the rows it could take, then moved them"
        other.rollback()

    assert timesheet_accrue_running() == 2, "the next accrual takes it"
    assert_invariants(now=timezone.now())


@pytest.mark.postgresql
def test_a_batch_cancelled_while_it_waits_for_a_held_row_locks_around_it(
    make_user: Callable[[str], User], project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL reports a lock timeout that fires as the lock is granted, the statement then
    waiting for another, as a cancel "due to user request": the batch is then redone as when
    its lock timeout is reported as such (a cancel sent by hand stands in for the race)."""
    import psycopg

    from tests import processes
    from timesheets.backends import postgresql

    monkeypatch.setattr(postgresql, "SHORT_LOCK_WAIT_S", 4.0)  # long enough to be seen waiting
    held, free = (
        timesheet_create(
            owner=make_user(name), project=project, description="", now=timezone.now(), start=True
        )
        for name in ("held", "free")
    )
    with (
        psycopg.connect(processes.test_database_url(), autocommit=True) as watcher,
        psycopg.connect(processes.test_database_url()) as other,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        other.execute("SELECT 1 FROM timesheets_timesheet WHERE id = %s FOR UPDATE", [held.pk])
        accrual = pool.submit(accrue_and_close)
        waiting = wait_for(
            watcher,
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = "
            "'Lock' AND query LIKE '%%UPDATE timesheets_timesheet t%%'",
        )
        watcher.execute("SELECT pg_cancel_backend(%s)", [waiting])

        assert accrual.result(timeout=10) == 1
        assert Timesheet.objects.get(pk=held.pk).accrued_until == held.accrued_until
        assert Timesheet.objects.get(pk=free.pk).accrued_until > free.accrued_until  # type: ignore[operator]
        other.rollback()


@pytest.mark.postgresql
def test_a_batch_past_its_statement_timeout_is_not_redone(
    make_user: Callable[[str], User], project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    from tests import processes
    from timesheets.backends import postgresql

    monkeypatch.setattr(postgresql, "SHORT_LOCK_WAIT_S", 4.0)
    monkeypatch.setattr(services, "JOB_STATEMENT_TIMEOUT", 0.3)
    held = timesheet_create(
        owner=make_user("held"), project=project, description="", now=timezone.now(), start=True
    )
    sent: list[str] = []

    def observed(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        sent.append(sql.split(None, 1)[0].upper())
        return execute(sql, params, many, context)

    with psycopg.connect(processes.test_database_url()) as other:
        other.execute("SELECT 1 FROM timesheets_timesheet WHERE id = %s FOR UPDATE", [held.pk])
        with connection.execute_wrapper(observed), pytest.raises(OperationalError) as raised:
            timesheet_accrue_running()
        other.rollback()

    assert "statement timeout" in str(raised.value)
    assert [verb for verb in sent if verb != "SET"] == ["WITH", "UPDATE"], (
        "the batches' ends, the range, and no locking fallback"
    )


def accrue_and_close() -> int:
    try:
        return timesheet_accrue_running()
    finally:
        connection.close()


def wait_for(watcher: Any, query: str, *, seconds: float = 5.0) -> Any:
    """The first value ``query`` finds, asked again until it finds one."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = watcher.execute(query).fetchone()
        if row is not None:
            return row[0]
        time.sleep(0.01)
    raise AssertionError(f"nothing found by {query!r} within {seconds} s")


@pytest.mark.postgresql
def test_an_accrual_writes_rows_no_one_holds_once(
    make_user: Callable[[str], User], project: Project
) -> None:
    """Locking a row is a write of its own: rows no one holds are updated without one."""
    running = [
        timesheet_create(
            owner=make_user(f"person{index}"),
            project=project,
            description="",
            now=timezone.now(),
            start=True,
        ).pk
        for index in range(5)
    ]

    assert timesheet_accrue_running(batch_size=2) == 5

    assert lockers(*running) == ["0"] * 5
    assert_invariants(now=timezone.now())


def lockers(*timesheet_ids: int) -> list[str]:
    """The transaction that last locked or updated each row's current version, or "0"."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT xmax::text FROM timesheets_timesheet WHERE id = ANY(%s) ORDER BY id",
            [list(timesheet_ids)],
        )
        return [row[0] for row in cursor.fetchall()]


def test_an_accrual_kept_waiting_past_its_bound_is_deferred_and_changes_nothing(
    alice: User, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "JOB_LOCK_TIMEOUT", 0.2)
    monkeypatch.setattr(services, "JOB_STATEMENT_TIMEOUT", 0.3)
    running = timesheet_create(
        owner=alice, project=project, description="", now=timezone.now(), start=True
    )

    with timesheets_locked():
        with pytest.raises(DatabaseBusy) as busy:
            timesheet_accrue_running()
        with pytest.raises(JobDeferred, match="busy with other writers"):
            accrue_running_timesheets(timezone.now())

    assert busy.value.waited_s == (0.2 if connection.vendor == "postgresql" else 0.3)
    assert Timesheet.objects.get(pk=running.pk).accrued_until == running.accrued_until
    assert timesheet_accrue_running() == 1, "the next run does the work"
    assert_invariants(now=timezone.now())


def waiting_for_a_lock() -> bool:
    """Whether another session of the test database waits for a lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        (waiting,) = cursor.fetchone()
    return bool(waiting)


@pytest.mark.postgresql
def test_a_correction_waits_for_a_start_of_the_same_person_and_sees_its_run(
    alice: User, project: Project
) -> None:
    """A correction locks the person first, as a start does: a run added while another entry of
    theirs starts is checked against the new run once it has committed, and refused by name,
    instead of failing on the database's constraint or slipping in before it."""
    corrected, starting = (
        timesheet_create(owner=alice, project=project, description=name, now=T0)
        for name in ("corrected", "starting")
    )
    started, release = threading.Event(), threading.Event()
    outcome: list[object] = []

    def start() -> None:
        try:
            with transaction.atomic():
                timesheet_start(timesheet_id=starting.pk, now=at(100))
                started.set()
                release.wait(timeout=60)
        finally:
            connection.close()

    def correct() -> None:
        try:
            outcome.append(
                segment_add(
                    timesheet_id=corrected.pk,
                    started_at=at(50),
                    ended_at=at(150),
                    actor=alice,
                    now=at(200),
                )
            )
        except Exception as error:  # noqa: BLE001  (asserted below)
            outcome.append(error)
        finally:
            connection.close()

    starter = threading.Thread(target=start)
    starter.start()
    try:
        assert started.wait(timeout=60)
        corrector = threading.Thread(target=correct)
        corrector.start()
        # The start still holds its transaction open: the correction must queue behind it.
        for _ in range(1200):
            if waiting_for_a_lock() or not corrector.is_alive():
                break
            time.sleep(0.05)
    finally:
        release.set()
        starter.join()
    corrector.join()

    (refused,) = outcome
    assert isinstance(refused, SegmentOverlap), refused
    assert refused.timesheet_id == starting.pk
    assert not Segment.objects.filter(timesheet=corrected).exists()
    assert_invariants(now=at(200))


@pytest.mark.postgresql
def test_a_stop_waits_for_a_transaction_holding_its_row_instead_of_missing_it(
    alice: User, project: Project
) -> None:
    import psycopg

    from tests import processes

    timesheet = timesheet_create(owner=alice, project=project, description="", now=T0)
    timesheet_start(timesheet_id=timesheet.pk, now=at(10))
    outcome: list[object] = []

    def stop() -> None:
        try:
            outcome.append(timesheet_stop(timesheet_id=timesheet.pk, now=at(40)))
        except Exception as error:  # noqa: BLE001  (asserted below)
            outcome.append(error)
        finally:
            connection.close()

    with psycopg.connect(processes.test_database_url()) as other:
        other.execute("SELECT 1 FROM timesheets_timesheet WHERE id = %s FOR UPDATE", [timesheet.pk])
        stopper = threading.Thread(target=stop)
        stopper.start()
        for _ in range(1200):
            if waiting_for_a_lock() or not stopper.is_alive():
                break
            time.sleep(0.05)
        other.rollback()
    stopper.join()

    (stopped,) = outcome
    assert isinstance(stopped, Timesheet), stopped
    assert (stopped.status, stopped.imputed) == (Timesheet.Status.STOPPED, timedelta(seconds=30))


@pytest.mark.postgresql
@pytest.mark.parametrize("holder", ["start", "correction"])
def test_a_start_or_a_correction_holding_a_person_lets_rows_referring_to_them_through(
    alice: User, project: Project, holder: str
) -> None:
    """The person's row is locked against other starts and corrections only (FOR NO KEY
    UPDATE): a row that merely refers to the person, such as a new API token, need not wait."""
    held = timesheet_create(owner=alice, project=project, description="held", now=T0)
    holding, release = threading.Event(), threading.Event()
    created: list[object] = []

    def hold() -> None:
        try:
            with transaction.atomic():
                if holder == "start":
                    timesheet_start(timesheet_id=held.pk, now=at(100))
                else:
                    segment_add(
                        timesheet_id=held.pk,
                        started_at=at(0),
                        ended_at=at(50),
                        actor=alice,
                        now=at(100),
                    )
                holding.set()
                release.wait(timeout=60)
        finally:
            connection.close()

    def create() -> None:
        try:
            created.append(api_token_create(user=alice, name="new", expires_at=None, now=at(101)))
        except Exception as error:  # noqa: BLE001  (asserted below)
            created.append(error)
        finally:
            connection.close()

    holder_thread = threading.Thread(target=hold)
    holder_thread.start()
    try:
        assert holding.wait(timeout=60)
        creator = threading.Thread(target=create)
        creator.start()
        waited = False
        for _ in range(1200):
            if not creator.is_alive():
                break
            if waiting_for_a_lock():
                waited = True
                break
            time.sleep(0.05)
    finally:
        release.set()
        holder_thread.join()
    creator.join()

    assert not waited, "the new token waited for the person's lock"
    (issued,) = created
    assert isinstance(issued, IssuedToken), issued


@pytest.mark.postgresql
def test_the_forgotten_run_job_skips_a_row_another_transaction_holds(
    make_user: Callable[[str], User], project: Project, settings: Any
) -> None:
    import psycopg

    from tests import processes

    settings.TIMESHEETS_MAX_RUNNING_HOURS = 1
    held, free = (
        timesheet_create(owner=make_user(name), project=project, description="", now=T0)
        for name in ("held", "free")
    )
    for timesheet in (held, free):
        timesheet_start(timesheet_id=timesheet.pk, now=at(0))
    with psycopg.connect(processes.test_database_url()) as other:
        other.execute("SELECT 1 FROM timesheets_timesheet WHERE id = %s FOR UPDATE", [held.pk])

        # Had it waited for the row, the job's lock timeout would have raised.
        assert timesheet_stop_forgotten(now=at(7200)) == 1
        assert Timesheet.objects.get(pk=held.pk).status == Timesheet.Status.RUNNING
        assert Timesheet.objects.get(pk=free.pk).status == Timesheet.Status.STOPPED
        other.rollback()

    assert timesheet_stop_forgotten(now=at(7200)) == 1, "the next run takes it"
    assert_invariants(now=at(7200))
