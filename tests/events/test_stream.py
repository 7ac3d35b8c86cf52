"""``GET /api/events``: who sees which events, resuming without gap or duplicate."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission, User
from django.http import StreamingHttpResponse
from django.test import AsyncClient
from django.utils import timezone

from events import api, broker
from events.jobs import event_prune
from events.models import Event
from tests.conftest import at
from tests.processes import Service, free_port
from timesheets.models import Project
from timesheets.services import timesheet_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settings_limits", "fast_polls")]

WAIT = 20.0  # seconds: a bound against hanging, not a measure


@pytest.fixture
def viewer(make_user: Callable[..., User]) -> User:
    user = make_user("vera")
    user.user_permissions.add(
        Permission.objects.get(codename="view_timesheet", content_type__app_label="timesheets")
    )
    return user


@pytest.fixture
def viewer_client(client_for: Callable[[User], AsyncClient], viewer: User) -> AsyncClient:
    return client_for(viewer)


class Stream:
    """The messages of an event stream, one at a time."""

    def __init__(self, response: StreamingHttpResponse) -> None:
        self.response = response
        self.chunks = aiter(response)
        self.buffer = ""

    async def message(self) -> str:
        while "\n\n" not in self.buffer:
            async with asyncio.timeout(WAIT):
                chunk = await anext(self.chunks)
            self.buffer += bytes(chunk).decode()
        message, _, self.buffer = self.buffer.partition("\n\n")
        return message

    async def event(self) -> dict[str, Any]:
        """The next event, skipping comments: its fields, with ``data`` parsed."""
        while True:
            message = await self.message()
            if not message.startswith(":"):
                break
        fields = dict(line.split(": ", 1) for line in message.splitlines())
        return {**fields, "data": json.loads(fields["data"])}

    async def ended(self) -> bool:
        try:
            await self.message()
        except StopAsyncIteration:
            return True
        return False


@asynccontextmanager
async def following(
    client: AsyncClient, path: str = "/api/events", headers: dict[str, str] | None = None
) -> AsyncIterator[Stream]:
    response = await client.get(path, headers=headers)
    assert response.status_code == 200, response.content
    assert isinstance(response, StreamingHttpResponse)
    stream = Stream(response)
    try:
        assert await stream.message() == f"retry: {api.RETRY_MILLISECONDS}"
        yield stream
    finally:
        await stream.chunks.aclose()
        await broker.aclose()


async def create(owner: User, project: Project, *, seconds: float = 1) -> Event:
    timesheet = await sync_to_async(timesheet_create)(
        owner=owner, project=project, description="", now=at(seconds)
    )
    return await Event.objects.aget(timesheet_id=timesheet.pk, type=Event.Type.TIMESHEET_CREATED)


async def subscribed(count: int = 1) -> None:
    """Wait until the broker has ``count`` subscribers: a stream's first read subscribes it."""
    async with asyncio.timeout(WAIT):
        while broker._broker is None or len(broker._broker.subscriptions) < count:
            await asyncio.sleep(0.01)


async def test_without_credentials_it_answers_401_in_json() -> None:
    response = await AsyncClient().get("/api/events")

    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json")
    assert "Authentication required" in response.json()["detail"]


async def test_the_stream_is_not_cached_nor_buffered(alice_client: AsyncClient) -> None:
    async with following(alice_client) as stream:
        assert stream.response["Content-Type"] == "text/event-stream"
        assert stream.response["Cache-Control"] == "no-cache, no-store"
        assert stream.response["X-Accel-Buffering"] == "no"


async def test_a_session_follows_too(alice: User, project: Project) -> None:
    client = AsyncClient()
    await client.aforce_login(alice)
    async with following(client) as stream:
        waiting = asyncio.ensure_future(stream.event())
        await subscribed()
        event = await create(alice, project)
        assert (await waiting)["id"] == str(event.pk)


async def test_each_event_says_its_id_type_and_state(
    alice_client: AsyncClient, alice: User, project: Project
) -> None:
    async with following(alice_client) as stream:
        waiting = asyncio.ensure_future(stream.event())
        await subscribed()
        event = await create(alice, project, seconds=7)

        received = await waiting

    assert received["id"] == str(event.pk)
    assert received["event"] == "timesheet.created"
    assert received["data"] == {
        **event.data,
        "type": "timesheet.created",
        "id": event.pk,
        "occurred_at": "2026-01-05T09:00:07.000000Z",
    }
    assert received["data"]["timesheet"]["id"] == event.timesheet_id


async def test_one_gets_only_ones_own_events(
    alice_client: AsyncClient, alice: User, bob: User, project: Project
) -> None:
    async with following(alice_client) as stream:
        waiting = asyncio.ensure_future(stream.event())
        await subscribed()
        await create(bob, project)
        own = await create(alice, project)

        # Bob's came first: had it been sent, it would be the first one read.
        assert (await waiting)["id"] == str(own.pk)


async def test_others_events_need_the_permission(
    alice_client: AsyncClient,
    bob: User,
    make_user: Callable[..., User],
    client_for: Callable[[User], AsyncClient],
) -> None:
    # Being staff is not enough: the permission is what grants it, as in the admin.
    bare_staff = await sync_to_async(make_user)("nora", is_staff=True)
    for client in (alice_client, await sync_to_async(client_for)(bare_staff)):
        response = await client.get("/api/events", {"user": "bob"})
        assert response.status_code == 403
        assert "view every timesheet" in response.json()["detail"]


async def test_with_the_permission_one_gets_everyones_or_one_persons(
    viewer_client: AsyncClient, alice: User, bob: User, project: Project
) -> None:
    async with following(viewer_client) as everyone:
        waiting = asyncio.ensure_future(everyone.event())
        await subscribed()
        alices = await create(alice, project)
        assert (await waiting)["id"] == str(alices.pk)
        bobs = await create(bob, project)
        assert (await everyone.event())["id"] == str(bobs.pk)

    async with following(viewer_client, "/api/events?user=bob") as one:
        waiting = asyncio.ensure_future(one.event())
        await subscribed()
        await create(alice, project)
        bobs = await create(bob, project)
        assert (await waiting)["id"] == str(bobs.pk)


async def test_an_unknown_user_is_a_clear_error(viewer_client: AsyncClient) -> None:
    response = await viewer_client.get("/api/events", {"user": "nobody"})

    assert response.status_code == 422
    assert response.json()["detail"] == "No user named 'nobody'."


@pytest.mark.parametrize("header", ["abc", "-1", "1e3", "99999999999999999999"])
async def test_a_malformed_last_event_id_is_a_clear_error(
    alice_client: AsyncClient, header: str
) -> None:
    response = await alice_client.get("/api/events", headers={"Last-Event-ID": header})

    assert response.status_code == 422
    assert "Last-Event-ID must be an event id" in response.json()["detail"]


@pytest.mark.parametrize("how", ["header", "query"])
async def test_resuming_sends_what_was_missed_then_what_comes_without_gap_or_duplicate(
    alice_client: AsyncClient, alice: User, bob: User, project: Project, how: str
) -> None:
    seen = await create(alice, project, seconds=1)
    missed = [await create(owner, project, seconds=2) for owner in (alice, bob, alice)]
    extra: dict[str, Any] = (
        {"headers": {"Last-Event-ID": str(seen.pk)}}
        if how == "header"
        else {"path": f"/api/events?last_event_id={seen.pk}"}
    )

    async with following(alice_client, **extra) as stream:
        received = [(await stream.event())["id"] for _ in range(2)]
        await subscribed()
        live = await create(alice, project, seconds=3)
        received.append((await stream.event())["id"])
        later = await create(alice, project, seconds=4)
        received.append((await stream.event())["id"])

    assert received == [str(e.pk) for e in (missed[0], missed[2], live, later)]


async def test_resuming_while_events_commit_misses_none_and_repeats_none(
    alice_client: AsyncClient, alice: User, project: Project
) -> None:
    seen = await create(alice, project, seconds=1)
    created = [await create(alice, project, seconds=2) for _ in range(3)]

    async with following(alice_client, headers={"Last-Event-ID": str(seen.pk)}) as stream:
        # Subscribed before it reads what it missed: these are both in the outbox and queued.
        first = asyncio.ensure_future(stream.event())
        await subscribed()
        created += [await create(alice, project, seconds=3) for _ in range(3)]
        received = [(await first)["id"]] + [(await stream.event())["id"] for _ in range(5)]
        tail = asyncio.ensure_future(stream.event())
        await asyncio.sleep(0.2)
        assert not tail.done(), "nothing after the last event, not even a repeat"
        tail.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tail

    assert received == [str(e.pk) for e in created]


async def test_resuming_past_the_retention_sends_a_reset_first(
    alice_client: AsyncClient, alice: User, project: Project, settings: Any
) -> None:
    settings.EVENTS_RETENTION_HOURS = 1
    seen = await create(alice, project, seconds=0)
    kept = await create(alice, project, seconds=3600)
    assert await sync_to_async(event_prune)(now=at(3600.5)) == 1

    async with following(alice_client, headers={"Last-Event-ID": str(seen.pk)}) as stream:
        reset = await stream.event()
        after = await stream.event()

    assert reset["event"] == "reset"
    assert "id" not in reset, "a reset does not move the client's last event id"
    assert reset["data"]["type"] == "reset"
    assert reset["data"]["last_event_id"] == seen.pk
    assert "Reload" in reset["data"]["detail"]
    assert after["id"] == str(kept.pk)


async def test_resuming_within_the_retention_sends_no_reset(
    alice_client: AsyncClient, alice: User, project: Project
) -> None:
    seen = await create(alice, project, seconds=0)
    kept = await create(alice, project, seconds=1)

    async with following(alice_client, headers={"Last-Event-ID": str(seen.pk)}) as stream:
        assert (await stream.event())["id"] == str(kept.pk)


async def test_a_comment_keeps_an_idle_stream_open(
    alice_client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "KEEPALIVE_INTERVAL", 0.05)

    async with following(alice_client) as stream:
        assert await stream.message() == ": keepalive"
        assert await stream.message() == ": keepalive"


async def test_a_stream_that_falls_behind_ends_and_resumes_from_the_outbox(
    alice_client: AsyncClient, alice: User, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker, "QUEUE_CAPACITY", 2)
    monkeypatch.setattr(api, "KEEPALIVE_INTERVAL", 0.05)

    async with following(alice_client) as stream:
        assert await stream.message() == ": keepalive"  # subscribed, and then it stops reading
        created = [await create(alice, project, seconds=n) for n in range(3)]
        async with asyncio.timeout(WAIT):
            while broker._broker is not None and broker._broker.subscriptions:
                await asyncio.sleep(0.01)

        assert await stream.ended()

    last = stream.buffer  # nothing was sent of what it fell behind on
    assert "id:" not in last
    async with following(alice_client, headers={"Last-Event-ID": "0"}) as again:
        assert [(await again.event())["id"] for _ in range(3)] == [str(e.pk) for e in created]


async def test_closing_the_broker_ends_the_streams(alice_client: AsyncClient) -> None:
    async with following(alice_client) as stream:
        waiting = asyncio.ensure_future(stream.ended())
        await subscribed()
        broker.close()

        assert await waiting


class LiveStream:
    """A stream read over HTTP from a real server, one line at a time."""

    def __init__(self, port: int, token: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
        self.connection.request("GET", "/api/events", headers={"Authorization": f"Bearer {token}"})
        self.response = self.connection.getresponse()
        assert self.response.status == 200

    def line(self) -> str:
        return self.response.readline().decode().rstrip("\n")

    def event_of_type(self, event_type: str) -> dict[str, Any]:
        """Read until an event of that type; its data.

        Within ``WAIT``, shorter than the broker's look at the outbox without notification
        (``NOTIFIED_POLL_INTERVAL``): on PostgreSQL, only a notification brings it in time.
        """
        current = ""
        give_up = time.monotonic() + WAIT
        while time.monotonic() < give_up:
            line = self.line()
            if line.startswith("event: "):
                current = line.removeprefix("event: ")
            elif line.startswith("data: ") and current == event_type:
                data: dict[str, Any] = json.loads(line.removeprefix("data: "))
                return data
            elif not line and self.response.isclosed():
                raise AssertionError(f"the stream ended before a {event_type!r} event")
        raise AssertionError(f"no {event_type!r} event within {WAIT} s")

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.stop()


def serve(services: list[Service], **env: str) -> int:
    port = free_port()
    web = Service(
        "serve", "--port", str(port), "--no-migrate", env={"WORKER_AUTOSTART": "false", **env}
    )
    services.append(web)
    web.wait_for_http(f"http://127.0.0.1:{port}/healthz")
    return port


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_sigterm_ends_the_streams_and_the_server_promptly(
    services: list[Service], alice: User, token_for: Callable[[User], str]
) -> None:
    port = serve(services)
    (web,) = services
    stream = LiveStream(port, token_for(alice))
    try:
        assert stream.line() == f"retry: {api.RETRY_MILLISECONDS}"
        assert stream.line() == ""
        web.wait_for("event_broker_started")

        web.send(signal.SIGTERM)

        # uvicorn re-raises the signal once it has shut down cleanly, as every serve does; a
        # stream left open would hold it past the wait and fail it.
        assert web.wait(15) == -signal.SIGTERM
        assert stream.response.read() == b"", "the stream ended, completely"
    finally:
        stream.close()
    closed = web.wait_for("event_stream_closed")
    assert closed["reason"] == "shutdown"
    assert any(e["event"] == "Application shutdown complete." for e in web.events())
    assert "Traceback" not in web.output


@pytest.mark.slow
@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_an_automatic_stop_by_the_worker_reaches_a_stream_of_the_web_process(
    services: list[Service], alice: User, project: Project, token_for: Callable[[User], str]
) -> None:
    limits = {"TIMESHEETS_MAX_RUNNING_HOURS": str(1 / 60), "WORKER_TICK_SECONDS": "0.2"}
    port = serve(services, **limits)
    (web,) = services
    stream = LiveStream(port, token_for(alice))
    try:
        assert stream.line() == f"retry: {api.RETRY_MILLISECONDS}"
        web.wait_for("event_broker_started")
        # Forgotten: it has run longer than the limit, which only the worker enforces.
        timesheet = timesheet_create(
            owner=alice,
            project=project,
            description="",
            start=True,
            now=timezone.now() - timedelta(minutes=5),
        )
        services.append(Service("runworker", env=limits))

        data = stream.event_of_type("timesheet.auto_stopped")
    finally:
        stream.close()
    assert data["timesheet"]["id"] == timesheet.pk
    assert data["timesheet"]["auto_stopped"] is True


def connect_without_reading(port: int, token: str) -> socket.socket:
    client = socket.socket()
    # A small window, so that the server's buffers fill soon once the client stops reading.
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.settimeout(WAIT)
    client.connect(("127.0.0.1", port))
    client.sendall(
        f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    assert client.recv(4096).startswith(b"HTTP/1.1 200 ")
    return client


def flood(owner: User, *, count: int, size: int) -> None:
    Event.objects.bulk_create(
        Event(
            type=Event.Type.TIMESHEET_UPDATED,
            occurred_at=timezone.now(),
            owner=owner,
            data={"timesheet": {}, "padding": "x" * size},
        )
        for _ in range(count)
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_client_that_stops_reading_is_cut_off(
    services: list[Service], alice: User, token_for: Callable[[User], str]
) -> None:
    port = serve(services)
    (web,) = services
    with connect_without_reading(port, token_for(alice)) as client:
        web.wait_for("event_broker_started")

        # Far more than its queue and the connection's buffers hold; it reads none of it.
        flood(alice, count=broker.QUEUE_CAPACITY * 3 // 2, size=10_000)

        slow = web.wait_for("event_subscriber_too_slow", timeout=60)
        assert slow["queued"] == broker.QUEUE_CAPACITY
        cut = web.wait_for("event_stream_cut", timeout=60)
        assert cut["aborted"] is True, "its connection dropped, not left to drain forever"
        received = 0
        while chunk := client.recv(1 << 16):  # what was buffered, then the end
            received += len(chunk)
    assert received < broker.QUEUE_CAPACITY * 10_000, "cut off, not sent everything"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=WAIT) as response:
        assert response.status == 200, "the server serves on"
    assert not [e for e in web.events() if e.get("level") == "error"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_client_that_stops_reading_does_not_hold_the_shutdown(
    services: list[Service], alice: User, token_for: Callable[[User], str]
) -> None:
    port = serve(services)
    (web,) = services
    with connect_without_reading(port, token_for(alice)):
        web.wait_for("event_broker_started")
        # Fewer than its queue holds, far more than the connection's buffers do.
        flood(alice, count=broker.QUEUE_CAPACITY * 9 // 10, size=20_000)
        web.wait_for("event_stream_started")
        time.sleep(2)  # for the broker to hand them over and the buffers to fill

        web.send(signal.SIGTERM)

        try:
            status = web.wait(WAIT + 10)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the stream held the shutdown:\n{web.output}") from None
        assert status == -signal.SIGTERM
    assert web.events("event_stream_cut"), "it had to be cut: it was stuck"
    assert not web.events("event_subscriber_too_slow")
    assert "Traceback" not in web.output


@pytest.mark.slow
@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_streams_hold_neither_database_connections_nor_request_threads(
    services: list[Service], alice: User, token_for: Callable[[User], str]
) -> None:
    port = serve(services, DATABASE_POOL_SIZE="2", REQUEST_THREADS="2")
    (web,) = services
    token = token_for(alice)
    streams = [LiveStream(port, token) for _ in range(4)]
    try:
        for stream in streams:
            assert stream.line() == f"retry: {api.RETRY_MILLISECONDS}"
        # Each has authenticated and subscribed: with their connections held, the pool of two
        # would be empty, and this would wait for it, then answer 503; with their threads
        # held, the last two streams and this request would wait until the streams end.
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/timesheets", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            assert response.status == 200
    finally:
        for stream in streams:
            stream.close()
    assert not web.events("database_busy")
