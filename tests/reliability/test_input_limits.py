"""Input limits not already covered by tests/timesheets/test_api.py, in process and over HTTP.

The API accepts no time and no duration from clients: timers start and stop at the server's
clock, and accrued time is the server's to compute. A body that carries such fields anyway
(negative durations, far-future or far-past instants) is refused with 422 naming the field, as
is any field an input does not have, and start and stop, which take no body, do not read one.
Over a real server: a chunked body over the limit (no Content-Length to refuse it by), headers
and URLs far over any sane size, and bytes that are not UTF-8 in the request line.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db.models import Model
from django.test import AsyncClient
from django.utils import timezone

from tests.processes import Service, free_port
from timesheets.models import Project, Segment, Timesheet
from timesheets.services import timesheet_create

pytestmark = pytest.mark.usefixtures("settings_limits")

JSON = "application/json"
KIB = 1024


def rows() -> list[list[dict[str, Any]]]:
    models: list[type[Model]] = [Project, Timesheet, Segment]
    return [[dict(row) for row in m._default_manager.order_by("pk").values()] for m in models]


arows = sync_to_async(rows)


async def send(token: str, method: str, path: str, body: bytes = b"", **extra: Any) -> Any:
    return await AsyncClient().generic(
        method,
        path,
        body,
        content_type=JSON,
        headers={"Authorization": f"Bearer {token}"},
        **extra,
    )


def fields_of(response: Any) -> set[str]:
    return {str(part) for error in response.json()["errors"] for part in error["loc"]}


SERVER_FIELDS = [
    pytest.param({"imputed_seconds": -5}, id="negative-duration"),
    pytest.param({"accumulated_seconds": 1e308}, id="huge-duration"),
    pytest.param({"accrued_until": "9999-12-31T23:59:59Z"}, id="far-future-watermark"),
    pytest.param({"running_since": "0001-01-01T00:00:00Z"}, id="far-past-start"),
    pytest.param({"running_since": "2026-01-05T09:00:00Z"}, id="backdated-start"),
    pytest.param({"created_at": "9999-12-31T23:59:59Z"}, id="far-future-creation"),
    pytest.param({"status": "running"}, id="status"),
    pytest.param({"auto_stopped": True}, id="auto-stopped"),
    pytest.param({"owner": 1}, id="owner"),
    pytest.param({"id": 1}, id="id"),
    pytest.param({"descripton": "a typo"}, id="misspelt"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("extra", SERVER_FIELDS)
async def test_times_durations_and_unknown_fields_in_a_new_timesheet_are_refused(
    alice: User, project: Project, token_for: Callable[[User], str], extra: dict[str, Any]
) -> None:
    token = await sync_to_async(token_for)(alice)
    before = await arows()

    response = await send(
        token, "POST", "/api/timesheets", json.dumps({"project": project.pk, **extra}).encode()
    )

    assert response.status_code == 422, response.content
    (field,) = extra
    assert field in fields_of(response)
    assert f"{field}: Extra inputs are not permitted" in response.json()["detail"]
    assert await arows() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"created_at": "0001-01-01T00:00:00Z"}, id="far-past-creation"),
        pytest.param({"id": 7}, id="id"),
    ],
)
async def test_fields_a_new_project_does_not_have_are_refused(
    staff: User, token_for: Callable[[User], str], extra: dict[str, Any]
) -> None:
    token = await sync_to_async(token_for)(staff)
    before = await arows()

    body = json.dumps({"code": "x", "designation": "X", **extra}).encode()
    response = await send(token, "POST", "/api/projects", body)

    assert response.status_code == 422, response.content
    assert set(extra) <= fields_of(response)
    assert await arows() == before


@pytest.mark.django_db
async def test_start_and_stop_read_no_body_and_keep_the_servers_clock(
    alice: User, project: Project, token_for: Callable[[User], str]
) -> None:
    token = await sync_to_async(token_for)(alice)
    timesheet = await sync_to_async(timesheet_create)(
        owner=alice, project=project, description="", now=timezone.now()
    )
    claims = json.dumps(
        {
            "running_since": "0001-01-01T00:00:00Z",
            "accrued_until": "9999-12-31T23:59:59Z",
            "imputed_seconds": -5,
            "at": "1970-01-01T00:00:00Z",
        }
    ).encode()

    before = timezone.now()
    started = await send(token, "POST", f"/api/timesheets/{timesheet.pk}/start", claims)
    stopped = await send(token, "POST", f"/api/timesheets/{timesheet.pk}/stop", claims)
    after = timezone.now()

    assert (started.status_code, stopped.status_code) == (200, 200)
    since = datetime.fromisoformat(started.json()["running_since"])
    end = datetime.fromisoformat(stopped.json()["updated_at"])
    assert before <= since <= end <= after
    assert timedelta(seconds=stopped.json()["imputed_seconds"]) == end - since
    segment = await Segment.objects.aget(timesheet=timesheet)
    assert (segment.started_at, segment.ended_at) == (since, end)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/timesheets", '{"project": true}', "project"),
        ("/api/timesheets", '{"project": "%(project)d"}', "project"),
        ("/api/timesheets", '{"project": %(project)d, "start": "true"}', "start"),
        ("/api/timesheets", '{"project": %(project)d, "start": 1}', "start"),
        ("/api/projects", '{"code": "x", "designation": "X", "is_active": "false"}', "is_active"),
        ("/api/projects", '{"code": "x", "designation": "X", "is_active": 0}', "is_active"),
    ],
)
async def test_values_of_another_json_type_than_documented_are_refused(
    staff: User,
    project: Project,
    token_for: Callable[[User], str],
    path: str,
    body: str,
    field: str,
) -> None:
    """{"project": true} is not project 1, nor "false" a boolean: the document says which
    JSON type each field takes, and a value of another type is refused, not converted."""
    token = await sync_to_async(token_for)(staff)
    before = await arows()

    response = await send(token, "POST", path, (body % {"project": project.pk}).encode())

    assert response.status_code == 422, response.content
    assert field in fields_of(response)
    assert await arows() == before


@pytest.mark.django_db
@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
async def test_numbers_json_does_not_have_are_refused(
    alice: User, project: Project, token_for: Callable[[User], str], number: str
) -> None:
    token = await sync_to_async(token_for)(alice)
    before = await arows()

    response = await send(token, "POST", "/api/timesheets", f'{{"project": {number}}}'.encode())

    assert response.status_code == 422, response.content
    assert "project" in fields_of(response)
    assert await arows() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "query", "status"),
    [
        ("/api/timesheets", "user=%FF%FE", 422),
        ("/api/timesheets", "status=%FF", 422),
        ("/api/timesheets", "project=%FF", 422),
        ("/api/timesheets", "limit=%C0%80", 422),
        ("/api/projects", "include_inactive=%FF", 422),
        ("/api/timesheets/%FF", "", 404),
        ("/api/timesheets/%FF/start", "", 404),
    ],
)
async def test_bytes_that_are_not_utf8_in_the_url(
    staff: User, token_for: Callable[[User], str], path: str, query: str, status: int
) -> None:
    token = await sync_to_async(token_for)(staff)
    before = await arows()
    method = "POST" if path.endswith("start") else "GET"

    response = await send(token, method, path, QUERY_STRING=query)

    assert response.status_code == status, response.content
    assert response.json()["detail"]
    assert await arows() == before


# --- Over a real server -------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[str]:
    port = free_port()
    service = Service("serve", "--port", str(port), "--no-migrate")
    try:
        base = f"http://127.0.0.1:{port}"
        service.wait_for_http(f"{base}/healthz")
        yield base
    finally:
        service.stop()


def raw_request(base: str, request: bytes) -> bytes:
    """Send bytes as they are, and return the status line (or b"" if the server hung up)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        try:
            connection.sendall(request)
        except ConnectionResetError:
            return b""
        answer = b""
        while b"\r\n" not in answer:
            chunk = connection.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_served_request_over_the_limits_is_refused(
    server: str, alice: User, project: Project, token_for: Callable[[User], str]
) -> None:
    token = token_for(alice)
    before = rows()

    def chunks() -> Iterator[bytes]:
        # A valid start, then more than the body limit; sent chunked, with no length.
        yield b'{"project": %d, "description": "' % project.pk
        for _ in range(16):
            yield b"x" * 64 * KIB
        yield b'"}'

    with httpx.Client(base_url=server, timeout=30) as client:
        chunked = client.post(
            "/api/timesheets",
            content=chunks(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": JSON},
        )
    huge_header = raw_request(
        server,
        b"GET /api/projects HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        + token.encode()
        + b"\r\nX-Padding: "
        + b"p" * 1024 * KIB
        + b"\r\n\r\n",
    )
    huge_url = raw_request(
        server, b"GET /api/projects?" + b"q" * 1024 * KIB + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    not_utf8 = raw_request(server, b"GET /api/timesheets/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n")

    assert chunked.request.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in chunked.request.headers
    assert chunked.status_code == 413, chunked.text
    assert chunked.json() == {"detail": "The request body is larger than 64 KiB."}
    assert huge_header == b"HTTP/1.1 400 Bad Request"
    assert huge_url == b"HTTP/1.1 400 Bad Request"
    assert not_utf8 == b"HTTP/1.1 400 Bad Request"
    assert rows() == before
