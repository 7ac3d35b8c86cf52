"""The threads lent to requests: one per request, kept for the next, given back by streams."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from asgiref.sync import SyncToAsync, ThreadSensitiveContext, sync_to_async
from django.core import signals

from config import threads
from config.asgi import application
from config.threads import RequestThreads, release_request_thread
from tests.asgi import http_scope


def test_asgiref_still_has_what_lending_uses() -> None:
    # A failure here means asgiref changed its internals: each request would start a thread
    # again, and each stream keep one.
    assert threads.RELEASABLE
    assert threads.LENDABLE


class TestRequestThreads:
    def test_a_thread_given_back_serves_the_next_request(self) -> None:
        lender = RequestThreads()
        first = lender.lend()
        thread = first.submit(threading.current_thread).result()

        assert lender.take_back(first)
        again = lender.lend()

        assert again is first
        assert again.submit(threading.current_thread).result() is thread
        lender.take_back(again)
        lender.close()

    def test_requests_at_once_get_a_thread_each(self) -> None:
        lender = RequestThreads()
        one, other = lender.lend(), lender.lend()

        assert one is not other
        assert (lender.lent, lender.idle) == (2, 0)
        lender.take_back(one)
        lender.take_back(other)
        assert (lender.lent, lender.idle) == (0, 2)
        lender.close()

    def test_threads_beyond_those_kept_end(self) -> None:
        lender = RequestThreads(idle_kept=1)
        kept, extra = lender.lend(), lender.lend()
        lender.take_back(kept)
        lender.take_back(extra)

        assert lender.idle == 1
        with pytest.raises(RuntimeError):
            extra.submit(print)
        lender.close()
        with pytest.raises(RuntimeError):
            kept.submit(print)

    def test_an_executor_not_lent_is_not_taken(self) -> None:
        lender = RequestThreads()
        with ThreadPoolExecutor(max_workers=1) as foreign:
            assert not lender.take_back(foreign)
            assert not lender.take_back(foreign)
        assert lender.idle == 0


def serve(paths: list[str]) -> list[int]:
    """Requests one after another to the project's application, as uvicorn sends them: on a
    loop of a thread no synchronous caller waits on. Answers the status of each."""

    async def one(path: str) -> int:
        scope = http_scope("GET", path, [(b"host", b"testserver")])
        sent: list[Mapping[str, Any]] = []
        received = False

        async def receive() -> dict[str, Any]:
            nonlocal received
            if not received:
                received = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        async def send(message: Mapping[str, Any]) -> None:
            sent.append(message)

        await application(scope, receive, send)
        status: int = next(m for m in sent if m["type"] == "http.response.start")["status"]
        return status

    async def all_of_them() -> list[int]:
        return [await one(path) for path in paths]

    with ThreadPoolExecutor(max_workers=1) as server:
        return server.submit(asyncio.run, all_of_them()).result()


@pytest.fixture
def request_threads() -> Iterator[list[threading.Thread]]:
    """The thread each request's ``request_started`` receivers run on, in order."""
    seen: list[threading.Thread] = []

    def receiver(**kwargs: Any) -> None:
        seen.append(threading.current_thread())

    signals.request_started.connect(receiver)
    yield seen
    signals.request_started.disconnect(receiver)


def test_an_api_request_runs_on_the_thread_the_previous_one_gave_back(
    request_threads: list[threading.Thread],
) -> None:
    statuses = serve(["/healthz", "/healthz", "/healthz"])

    assert statuses == [200, 200, 200]
    assert len(request_threads) == 3
    assert request_threads[0] is request_threads[1] is request_threads[2]
    assert request_threads[0] is not threading.current_thread()
    assert threads.threads.lent == 0


def test_a_stream_gives_its_thread_back_before_it_ends() -> None:
    async def stream() -> None:
        lent = threads.threads.lend()
        async with threads.threads.context(lent):
            thread = await sync_to_async(threading.current_thread)()

            release_request_thread()

            assert threads.threads.lent == 0, "back before the request ends"
            assert await sync_to_async(threading.current_thread)() is not thread, "a new one"
        threads.threads.take_back(lent)  # as the handler does: nothing more to give back

    with ThreadPoolExecutor(max_workers=1) as server:
        server.submit(asyncio.run, stream()).result()
    assert threads.threads.lent == 0


def test_a_request_on_a_thread_of_its_own_ends_it_when_released() -> None:
    async def request() -> None:
        # As Django's own handler runs a request: a context whose thread asgiref starts.
        async with ThreadSensitiveContext():
            thread = await sync_to_async(threading.current_thread)()
            context = SyncToAsync.thread_sensitive_context.get()
            assert context in SyncToAsync.context_to_thread_executor

            release_request_thread()

            assert context not in SyncToAsync.context_to_thread_executor
            assert await sync_to_async(threading.current_thread)() is not thread, "a new one"

    with ThreadPoolExecutor(max_workers=1) as server:
        server.submit(asyncio.run, request()).result()


def test_a_page_request_runs_on_a_lent_thread_too(
    request_threads: list[threading.Thread],
) -> None:
    statuses = serve(["/accounts/login/", "/accounts/login/"])

    assert statuses == [200, 200]
    assert request_threads[0] is request_threads[1]
    assert threads.threads.lent == 0
