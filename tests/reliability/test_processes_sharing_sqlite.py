"""Two web workers and a runworker on one embedded SQLite file, with 200 concurrent users.

``serve --workers 2`` and a ``runworker``, each accruing every 0.2 s, share the database file
while 200 people each start a timer, read it and stop it, again and again, all at once. Every
request must be answered without a 5xx: writers wait for each other (the busy timeout,
immediate transactions) instead of failing with "database is locked". The invariants must hold
afterwards. It runs on PostgreSQL too, where the same must hold.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from tests.invariants import assert_invariants
from tests.processes import Service, free_port
from timesheets.models import Project
from timesheets.services import api_token_create

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("settings_limits"),
]

USERS = 200
ROUNDS = int(os.environ.get("SQLITE_PROCESSES_ROUNDS", "3"))  # start, read, stop per round
REQUEST_TIMEOUT = 60.0  # seconds; far above any healthy answer, so a hang fails clearly
KEEP_ALIVE = 2.0  # seconds the client keeps an idle connection, under the server's 5 s
TICK = "0.2"  # seconds between two accruals, in each of the three processes


@pytest.fixture
def deployment() -> Iterator[str]:
    port = free_port()
    env = {"WORKER_TICK_SECONDS": TICK, "TIMESHEETS_MAX_RUNNING_PER_USER": "1"}
    web = Service("serve", "--port", str(port), "--workers", "2", "--no-migrate", env=env)
    worker = Service("runworker", env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        web.wait_for_http(f"{base}/healthz")
        yield base
        web.send(signal.SIGTERM)
        worker.send(signal.SIGTERM)
        assert web.wait(30) in (0, -signal.SIGTERM), web.output
        assert worker.wait(30) == 0, worker.output
        for service in (web, worker):
            errors = [e for e in service.events() if e.get("level") in ("error", "critical")]
            assert not errors, errors[:3]
            assert "database is locked" not in service.output
    finally:
        web.stop()
        worker.stop()


async def person(client: httpx.AsyncClient, token: str, project: int) -> list[int]:
    headers = {"Authorization": f"Bearer {token}"}
    statuses = []
    for _ in range(ROUNDS):
        created = await client.post(
            "/api/timesheets", json={"project": project, "start": True}, headers=headers
        )
        statuses.append(created.status_code)
        if created.status_code != 201:
            continue
        current = await client.get("/api/timesheets/current", headers=headers)
        stopped = await client.post(f"/api/timesheets/{created.json()['id']}/stop", headers=headers)
        statuses += [current.status_code, stopped.status_code]
    return statuses


async def everyone(base: str, tokens: list[str], project: int) -> list[int]:
    # A client that keeps an idle connection as long as the server (uvicorn: 5 s) may send a
    # request on it just as the server closes it; a browser or proxy lets go sooner.
    limits = httpx.Limits(
        max_connections=USERS, max_keepalive_connections=USERS, keepalive_expiry=KEEP_ALIVE
    )
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=REQUEST_TIMEOUT) as client:
        answered = await asyncio.gather(*(person(client, token, project) for token in tokens))
    return [status for statuses in answered for status in statuses]


def test_two_web_workers_and_a_runworker_share_the_database_without_5xx(
    deployment: str, project: Project
) -> None:
    now = timezone.now()
    tokens = [
        api_token_create(
            user=User.objects.create_user(username=f"user{n}"),
            name="load",
            expires_at=None,
            now=now,
        ).secret
        for n in range(USERS)
    ]

    started = time.monotonic()
    statuses = Counter(asyncio.run(everyone(deployment, tokens, project.pk)))
    elapsed = time.monotonic() - started

    assert statuses == {201: USERS * ROUNDS, 200: 2 * USERS * ROUNDS}, statuses
    assert_invariants(now=timezone.now(), max_running_per_user=1)
    print(  # noqa: T201  (the figures of docs/reliability.md, with -s)
        f"\n{USERS} users, {ROUNDS} rounds: {statuses.total()} requests in {elapsed:.1f} s, "
        f"{dict(statuses)}"
    )
