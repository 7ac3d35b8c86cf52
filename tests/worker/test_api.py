from __future__ import annotations

from datetime import datetime

import pytest
from django.test import AsyncClient

from worker import process
from worker.registry import Job
from worker.runner import Runner

pytestmark = pytest.mark.django_db


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
async def test_only_staff(alice_client: AsyncClient, method: str, path: str) -> None:
    forbidden = await getattr(alice_client, method)(path)
    anonymous = await getattr(AsyncClient(), method)(path)

    assert forbidden.status_code == 403
    assert forbidden.json() == {"detail": "Only staff can see or start the worker."}
    assert anonymous.status_code == 401
    assert process.current() is None
