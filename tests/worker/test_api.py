from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient

from worker import process
from worker.registry import Job
from worker.runner import Runner

pytestmark = pytest.mark.django_db


@pytest.fixture
def bare_staff_client(
    make_user: Callable[..., User], client_for: Callable[[User], AsyncClient]
) -> AsyncClient:
    return client_for(make_user("root", is_staff=True))


@pytest.fixture
def idle_runner() -> None:
    async def idle(now: datetime) -> int:
        return 0

    process.set_factory(lambda: Runner(jobs=[Job(name="idle", function=idle, interval=60.0)]))


async def test_the_status_before_anything_started(staff_client: AsyncClient) -> None:
    response = await staff_client.get("/api/worker")

    assert response.status_code == 200
    assert response.json() == {
        "running": False,
        "mode": None,
        "pid": None,
        "started_at": None,
        "stopped_at": None,
        "loop_lag_ms": None,
        "loop_lag_max_ms": None,
        "jobs": [],
    }


@pytest.mark.usefixtures("idle_runner")
async def test_start_is_idempotent_and_answers_with_the_status(
    staff_client: AsyncClient,
) -> None:
    client = staff_client

    first = await client.post("/api/worker/start")
    second = await client.post("/api/worker/start")

    assert first.status_code == second.status_code == 200
    assert first.json()["running"] is True
    assert first.json()["started_at"] == second.json()["started_at"]
    (job,) = second.json()["jobs"]
    assert job["name"] == "idle"
    assert job["interval_s"] == 60.0
    status = (await client.get("/api/worker")).json()
    assert status["pid"] == first.json()["pid"]


@pytest.mark.parametrize(
    ("method", "path"), [("get", "/api/worker"), ("post", "/api/worker/start")]
)
async def test_only_holders_of_run_worker(
    alice_client: AsyncClient, bare_staff_client: AsyncClient, method: str, path: str
) -> None:
    forbidden = await getattr(alice_client, method)(path)
    staff_alone = await getattr(bare_staff_client, method)(path)
    anonymous = await getattr(AsyncClient(), method)(path)

    assert forbidden.status_code == staff_alone.status_code == 403
    assert forbidden.json() == {
        "detail": "Seeing or starting the worker needs the run_worker permission."
    }
    assert anonymous.status_code == 401
    assert process.current() is None


@pytest.mark.usefixtures("idle_runner")
async def test_the_permission_alone_is_enough(
    make_user: Callable[..., User], client_for: Callable[[User], AsyncClient]
) -> None:
    operator = await sync_to_async(make_user)("ops", permissions=["timesheets.run_worker"])
    client = await sync_to_async(client_for)(operator)

    response = await client.post("/api/worker/start")

    assert response.status_code == 200
    assert response.json()["running"] is True
