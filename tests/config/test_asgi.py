"""The ASGI application under uvicorn, as ``manage.py serve`` runs it."""

from __future__ import annotations

import signal
import urllib.request
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from tests.invariants import assert_invariants
from tests.processes import Service, free_port, is_accrual
from timesheets.models import Project
from timesheets.services import timesheet_create

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def web() -> Iterator[tuple[Service, int]]:
    port = free_port()
    service = Service(
        "serve", "--port", str(port), "--no-migrate", env={"WORKER_TICK_SECONDS": "0.2"}
    )
    yield service, port
    service.stop()


def test_the_lifespan_runs_the_jobs_and_sigterm_stops_them_gracefully(
    web: tuple[Service, int], alice: User, project: Project
) -> None:
    now = timezone.now()
    timesheet = timesheet_create(owner=alice, project=project, description="", now=now, start=True)
    service, port = web

    service.wait_for("job_run", where=lambda event: is_accrual(event) and event["rows"] == 1)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        assert response.status == 200
    assert service.events("runner_hosted")[0]["mode"] == "serving_loop"

    sent_at = timezone.now()
    service.send(signal.SIGTERM)

    # After a clean shutdown uvicorn re-raises the signal it caught, so that whoever started
    # it sees the process end by SIGTERM, as it would have without a handler.
    assert service.wait(15) == -signal.SIGTERM
    stopped = service.wait_for("runner_stopped")
    assert (stopped["final_runs"], stopped["abandoned"]) == (2, []), "the accrual, the heartbeat"
    assert any(e["event"] == "Application shutdown complete." for e in service.events())
    assert "Task was destroyed but it is pending" not in service.output
    assert "Traceback" not in service.output
    timesheet.refresh_from_db()
    assert timesheet.accrued_until is not None
    assert timesheet.accrued_until >= sent_at, "the final accrual came after the signal"
    assert_invariants(now=timezone.now())
