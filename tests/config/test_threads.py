"""The threads lent to requests: one per request, kept for the next, given back by streams."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
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

    def test_every_thread_requests_may_hold_at_once_is_kept(self, settings: Any) -> None:
        settings.REQUEST_THREADS = 40
        lender = RequestThreads()
        out = [lender.lend() for _ in range(45)]
        for executor in out:
            lender.take_back(executor)

        assert lender.idle == 40 + threads.PROBE_THREADS_KEPT
        lender.close()

    def test_the_limit_is_the_setting_unless_given(self, settings: Any) -> None:
        settings.REQUEST_THREADS = 3

        assert RequestThreads().limit == 3
        assert RequestThreads(limit=5).limit == 5

    async def test_beyond_the_limit_a_borrower_waits_for_a_thread_to_come_back(self) -> None:
        lender = RequestThreads(limit=1)
        first = await lender.borrow()
        waiting = asyncio.ensure_future(lender.borrow())
        await until(lambda: lender.waiting == 1)

        assert not waiting.done()
        lender.take_back(first)

        assert await asyncio.wait_for(waiting, 5) is first, "the thread given back"
        assert lender.lent == 1
        lender.take_back(first)
        lender.close()

    async def test_borrowers_are_served_in_the_order_they_came(self) -> None:
        lender = RequestThreads(limit=1)
        held = await lender.borrow()
        served: list[str] = []

        async def borrower(name: str) -> None:
            executor = await lender.borrow()
            served.append(name)
            lender.take_back(executor)

        borrowers = [asyncio.ensure_future(borrower(name)) for name in "abc"]
        await until(lambda: lender.waiting == 3)
        lender.take_back(held)
        await asyncio.wait_for(asyncio.gather(*borrowers), 5)

        assert served == ["a", "b", "c"]
        assert (lender.lent, lender.idle) == (0, 1)
        lender.close()

    async def test_a_borrower_gone_while_waiting_takes_no_thread(self) -> None:
        lender = RequestThreads(limit=1)
        held = await lender.borrow()
        gone = asyncio.ensure_future(lender.borrow())
        await until(lambda: lender.waiting == 1)

        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        lender.take_back(held)

        again = await asyncio.wait_for(lender.borrow(), 5)
        assert again is held
        assert lender.lent == 1
        lender.take_back(again)
        lender.close()

    async def test_a_thread_lent_does_not_count_against_the_limit(self) -> None:
        lender = RequestThreads(limit=1)
        borrowed = await lender.borrow()
        lent = lender.lend()  # a probe's: never waits
        lender.take_back(borrowed)

        again = await asyncio.wait_for(lender.borrow(), 5)

        assert (lender.lent, lender.waiting) == (2, 0), "borrowed while the lent one is out"
        lender.take_back(again)
        lender.take_back(lent)
        lender.close()

    def test_an_executor_not_lent_is_not_taken(self) -> None:
        lender = RequestThreads()
        with ThreadPoolExecutor(max_workers=1) as foreign:
            assert not lender.take_back(foreign)
            assert not lender.take_back(foreign)
        assert lender.idle == 0


async def one(path: str) -> int:
    """A GET to the project's application, as uvicorn sends it; answers its status."""
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


def on_a_server_loop[T](scenario: Coroutine[Any, Any, T]) -> T:
    """Run ``scenario`` on a loop of a thread no synchronous caller waits on, as uvicorn's."""
    with ThreadPoolExecutor(max_workers=1) as server:
        return server.submit(asyncio.run, scenario).result()


def serve(paths: list[str]) -> list[int]:
    """Requests one after another to the project's application. Answers the status of each."""

    async def all_of_them() -> list[int]:
        return [await one(path) for path in paths]

    return on_a_server_loop(all_of_them())


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


def test_a_stream_that_gives_its_thread_back_lets_the_next_request_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lender = RequestThreads(limit=1)
    monkeypatch.setattr(threads, "threads", lender)

    async def stream() -> int:
        borrowed = await lender.borrow()
        async with lender.context(borrowed):
            await sync_to_async(threading.current_thread)()
            release_request_thread()
            # The stream goes on; a request comes in meanwhile.
            status = await asyncio.wait_for(one("/api/timesheets"), 10)
        lender.take_back(borrowed)
        return status

    assert on_a_server_loop(stream()) == 401
    assert lender.lent == 0
    lender.close()


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


def test_requests_beyond_the_limit_wait_their_turn_and_the_probes_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lender = RequestThreads(limit=1)
    monkeypatch.setattr(threads, "threads", lender)

    async def scenario() -> tuple[bool, int, int]:
        busy = await lender.borrow()  # a request that has the only thread
        request = asyncio.ensure_future(one("/api/timesheets"))
        probe = await asyncio.wait_for(one("/healthz"), 10)
        await until(lambda: lender.waiting == 1)
        waited = not request.done()
        lender.take_back(busy)
        return waited, probe, await asyncio.wait_for(request, 10)

    waited, probe, answered = on_a_server_loop(scenario())

    assert probe == 200, "the probe is answered while every thread is out"
    assert waited, "the request waited for the thread"
    assert answered == 401, "then it was served (no token: refused)"
    assert lender.lent == 0
    lender.close()


async def until(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + within
    while not condition():
        assert loop.time() < give_up, "condition not met in time"
        await asyncio.sleep(0.001)


def test_a_page_request_runs_on_a_lent_thread_too(
    request_threads: list[threading.Thread],
) -> None:
    statuses = serve(["/accounts/login/", "/accounts/login/"])

    assert statuses == [200, 200]
    assert request_threads[0] is request_threads[1]
    assert threads.threads.lent == 0
