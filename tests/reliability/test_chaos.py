"""Replica chaos: two web processes and a ``runworker``, one of them killed at random every 2 s.

While clients start and stop 200 timesheets of 20 people through both web processes, a random
replica gets SIGKILL every ``KILL_EVERY`` seconds and is started again at once. Every HTTP
answer must be a success (a request cut off by a kill gets no answer at all, and is counted as
such), and the invariants must hold in a consistent snapshot taken after every kill, and at the
end: live time equals the segments' sum exactly, at most one timesheet runs per person, nothing
is negative. ``CHAOS_SECONDS`` sets how long the chaos lasts; docs/reliability.md records a
30 s run.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from tests.invariants import assert_invariants
from tests.processes import Service, free_port
from timesheets.models import Project, Segment, Timesheet
from timesheets.services import timesheet_create

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgresql,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("settings_limits"),
]

CHAOS_SECONDS = float(os.environ.get("CHAOS_SECONDS", "9"))
KILL_EVERY = 2.0  # seconds
PEOPLE = 20
TIMESHEETS_EACH = 10
CLIENTS = 20  # requests in flight at once
REQUEST_TIMEOUT = 30.0  # seconds; a hang fails the test instead of passing unnoticed
ENV = {"WORKER_TICK_SECONDS": "0.2", "TIMESHEETS_MAX_RUNNING_PER_USER": "1"}


@dataclass
class Replica:
    """One replica, started again after each kill; every incarnation's log is kept."""

    arguments: tuple[str, ...]
    incarnations: list[Service] = field(default_factory=list)

    def start(self) -> None:
        self.incarnations.append(Service(*self.arguments, env=ENV))

    def kill(self) -> None:
        current = self.incarnations[-1]
        current.send(signal.SIGKILL)
        current.wait(10)

    def events(self, name: str) -> list[dict[str, object]]:
        return [event for service in self.incarnations for event in service.events(name)]


@pytest.fixture
def replicas() -> Iterator[dict[str, Replica]]:
    ports = [free_port(), free_port()]
    started = {
        **{
            f"web-{port}": Replica(("serve", "--port", str(port), "--no-migrate")) for port in ports
        },
        "worker": Replica(("runworker",)),
    }
    try:
        for replica in started.values():
            replica.start()
        for name, replica in started.items():
            if name.startswith("web-"):
                port = name.removeprefix("web-")
                replica.incarnations[-1].wait_for_http(f"http://127.0.0.1:{port}/healthz")
        yield started
    finally:
        for replica in started.values():
            for service in replica.incarnations:
                service.stop()


@dataclass
class Tally:
    answers: Counter[int] = field(default_factory=Counter)
    no_answer: int = 0  # requests cut off by a kill, or refused while a replica restarted
    kills: Counter[str] = field(default_factory=Counter)
    snapshots: int = 0


def snapshot_invariants() -> None:
    """Check the invariants in one REPEATABLE READ snapshot, while everything runs."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute("SELECT 1")  # the snapshot is taken here
            # After the snapshot: no watermark in it is later than this instant.
            assert_invariants(now=timezone.now(), max_running_per_user=1)
    finally:
        connection.close()


async def clients(
    tally: Tally, bases: list[str], work: list[tuple[str, int]], *, until: float, seed: int
) -> None:
    chooser = random.Random(seed)
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT) as client:

        async def one_client() -> None:
            while asyncio.get_running_loop().time() < until:
                token, timesheet_id = chooser.choice(work)
                action = chooser.choice(("start", "stop"))
                url = f"{chooser.choice(bases)}/api/timesheets/{timesheet_id}/{action}"
                try:
                    response = await client.post(url, headers={"Authorization": f"Bearer {token}"})
                except httpx.TransportError:
                    tally.no_answer += 1
                    await asyncio.sleep(0.05)  # the replica is down or starting
                    continue
                tally.answers[response.status_code] += 1

        await asyncio.gather(*(one_client() for _ in range(CLIENTS)))


async def chaos(
    tally: Tally, replicas: dict[str, Replica], *, started: float, until: float, seed: int
) -> None:
    """At every KILL_EVERY seconds from the start, kill a random replica and start it again."""
    chooser = random.Random(seed)
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="invariants") as checker:
        for moment in kill_moments(started, until):
            await asyncio.sleep(max(0.0, moment - loop.time()))
            name = chooser.choice(sorted(replicas))
            replicas[name].kill()
            replicas[name].start()
            tally.kills[name] += 1
            await loop.run_in_executor(checker, snapshot_invariants)
            tally.snapshots += 1


def kill_moments(started: float, until: float) -> list[float]:
    count = int((until - started) / KILL_EVERY - 1e-9)
    return [started + KILL_EVERY * k for k in range(1, count + 1)]


async def run(
    tally: Tally, replicas: dict[str, Replica], work: list[tuple[str, int]], seed: int
) -> None:
    started = asyncio.get_running_loop().time()
    until = started + CHAOS_SECONDS
    bases = [f"http://127.0.0.1:{name.removeprefix('web-')}" for name in replicas if "web" in name]
    await asyncio.gather(
        clients(tally, bases, work, until=until, seed=seed),
        chaos(tally, replicas, started=started, until=until, seed=seed + 1),
    )


def test_replicas_killed_at_random_never_break_the_invariants(
    replicas: dict[str, Replica],
    make_user: Callable[..., User],
    project: Project,
    token_for: Callable[[User], str],
) -> None:
    now = timezone.now()
    work = []
    for n in range(PEOPLE):
        person = make_user(f"person{n}")
        token = token_for(person)
        for k in range(TIMESHEETS_EACH):
            timesheet = timesheet_create(owner=person, project=project, description=f"{k}", now=now)
            work.append((token, timesheet.pk))
    seed = random.randrange(2**32)
    tally = Tally()

    asyncio.run(run(tally, replicas, work, seed))
    for replica in replicas.values():
        replica.kill()

    assert set(tally.answers) == {200}, f"seed {seed}: {tally}"
    assert tally.answers[200] >= CHAOS_SECONDS * 10, f"seed {seed}: the clients got through"
    assert tally.kills.total() == len(kill_moments(0.0, CHAOS_SECONDS))
    assert tally.snapshots == tally.kills.total()
    for name, replica in replicas.items():
        statuses = {event["status"] for event in replica.events("http_request")}
        assert all(isinstance(s, int) and s < 500 for s in statuses), (name, statuses)
        assert not replica.events("job_failed"), name
    assert_invariants(now=timezone.now(), max_running_per_user=1)
    assert Timesheet.objects.count() == PEOPLE * TIMESHEETS_EACH
    assert Segment.objects.exists(), "timers were started"
    # The figures docs/reliability.md reports; pytest -s shows them.
    print(  # noqa: T201
        f"{CHAOS_SECONDS:g} s of chaos (seed {seed}): {tally.kills.total()} kills "
        f"{dict(tally.kills)}, {tally.answers[200]} answers, all 200; {tally.no_answer} "
        f"requests without an answer (cut off, or sent to a replica restarting); "
        f"{Segment.objects.count()} runs; invariants held in {tally.snapshots} snapshots "
        f"and at the end"
    )
