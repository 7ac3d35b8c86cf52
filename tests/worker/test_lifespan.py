"""The ASGI lifespan protocol, spoken to the application as a server would."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pytest

from config import collector
from events import broker
from worker import process
from worker.lifespan import Lifespan, with_worker
from worker.registry import Job
from worker.runner import Runner


class Server:
    """The server's side of one lifespan conversation."""

    def __init__(self, app: Any) -> None:
        self.inbox: asyncio.Queue[Mapping[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[Mapping[str, Any]] = asyncio.Queue()
        self.task = asyncio.create_task(
            app({"type": "lifespan", "asgi": {"version": "3.0"}}, self.inbox.get, self.outbox.put)
        )

    async def say(self, message_type: str) -> Mapping[str, Any]:
        await self.inbox.put({"type": message_type})
        return await asyncio.wait_for(self.outbox.get(), timeout=10)


async def django_never_called(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the lifespan scope must not reach Django")


@pytest.fixture
def counted() -> list[datetime]:
    calls: list[datetime] = []

    async def count(now: datetime) -> int:
        calls.append(now)
        return 0

    process.set_factory(
        lambda: Runner(
            jobs=[Job(name="count", function=count, interval=0.02, run_at_shutdown=True)]
        )
    )
    return calls


async def test_startup_starts_the_runner_on_the_serving_loop_and_shutdown_stops_it(
    settings: Any, counted: list[datetime]
) -> None:
    settings.WORKER_AUTOSTART = True
    server = Server(with_worker(django_never_called))

    assert (await server.say("lifespan.startup"))["type"] == "lifespan.startup.complete"
    assert gc.get_threshold()[0] == collector.YOUNG_THRESHOLD, "tuned for many streams"
    while len(counted) < 3:
        await asyncio.sleep(0.01)
    assert process.status()["mode"] == "serving_loop"
    assert process.status()["running"] is True

    assert (await server.say("lifespan.shutdown"))["type"] == "lifespan.shutdown.complete"
    await server.task
    assert process.current() is None
    runs = len(counted)
    await asyncio.sleep(0.1)
    assert len(counted) == runs, "the runner is stopped"


async def test_without_autostart_no_runner_starts(settings: Any, counted: list[datetime]) -> None:
    settings.WORKER_AUTOSTART = False
    server = Server(with_worker(django_never_called))

    assert (await server.say("lifespan.startup"))["type"] == "lifespan.startup.complete"
    assert process.current() is None
    assert (await server.say("lifespan.shutdown"))["type"] == "lifespan.shutdown.complete"
    await server.task
    assert counted == []


async def test_a_failing_startup_is_reported_to_the_server() -> None:
    async def broken() -> None:
        raise RuntimeError("cannot start")

    server = Server(Lifespan(django_never_called, on_startup=[broken]))

    reply = await server.say("lifespan.startup")

    assert reply["type"] == "lifespan.startup.failed"
    assert "RuntimeError: cannot start" in reply["message"]
    await server.task


async def test_other_scopes_reach_the_application() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    async def nothing() -> Mapping[str, Any]:
        return {}

    async def ignore(message: Mapping[str, Any]) -> None:
        return None

    await Lifespan(app)({"type": "http"}, nothing, ignore)

    assert seen == ["http"]


@pytest.mark.django_db
async def test_shutdown_ends_the_event_streams(alice: Any) -> None:
    server = Server(with_worker(django_never_called))
    assert (await server.say("lifespan.startup"))["type"] == "lifespan.startup.complete"
    subscription = await broker.broker().subscribe(owner_id=alice.pk)

    assert (await server.say("lifespan.shutdown"))["type"] == "lifespan.shutdown.complete"
    await server.task

    with pytest.raises(broker.Closed, match="shutdown"):
        await subscription.next(within=10)
    assert broker._broker is None
