"""The threads requests run their database work on, kept from one request to the next.

Django's ASGI handler runs each request inside ``ThreadSensitiveContext()``: asgiref starts a
thread for the request's first synchronous call and, when the request ends, one more thread to
join it. Two thread starts per request cost more wall-clock time than the rest of a short API
request's hops (callgrind does not see it: it counts instructions, not the scheduler's work).
``RequestThreads`` lends each request a single-thread executor from a free list instead
(asgiref >= 3.13 accepts an executor the caller owns) and takes it back when the request ends.

At most ``REQUEST_THREADS`` requests hold a thread at once; the others wait on the event loop,
where waiting costs nothing, until one is given back. Without that bound every request under
load got a thread: threads beyond the database pool's connections only waited for one, and all
of them contended for the interpreter with the event loop (measured in docs/benchmarks.md).
The probes never wait: a server busy with slow requests still answers them at once.

A request's synchronous calls still run one after another on one thread, as Django expects
(its database connections belong to a thread); a call the request stopped waiting for
(a client gone) finishes before the next borrower's first call starts. A request made from
synchronous code through ``async_to_sync`` (Django's test client, the tests) keeps asgiref's
rule instead: its calls come back to the caller's thread.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import MutableMapping
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from asgiref.sync import AsyncToSync, SyncToAsync, ThreadSensitiveContext
from django.conf import settings

from config.middleware import JSON_PATHS

# Threads kept for later requests beyond the REQUEST_THREADS that requests may hold at once:
# the probes', which never wait. More are ended as they come back.
PROBE_THREADS_KEPT = 2

# Three attributes of asgiref that are not a public interface (asgiref is pinned below 3.14 in
# pyproject.toml), checked here and tested (tests/config/test_threads.py): where SyncToAsync
# keeps the executor of the running request's context, and where AsyncToSync keeps the thread
# of a synchronous caller. Should they change, requests get a new thread each, as Django gives
# them, and a stream keeps its request's thread for as long as it lasts: slower, never wrong.
_REQUEST_CONTEXT = getattr(SyncToAsync, "thread_sensitive_context", None)
_EXECUTORS = getattr(SyncToAsync, "context_to_thread_executor", None)
_SYNC_CALLERS = getattr(AsyncToSync, "executors", None)
RELEASABLE = isinstance(_REQUEST_CONTEXT, contextvars.ContextVar) and isinstance(
    _EXECUTORS, MutableMapping
)
LENDABLE = RELEASABLE and _SYNC_CALLERS is not None


def _sync_caller_waits() -> bool:
    """Whether this loop runs for a synchronous caller (``async_to_sync``), whose thread asgiref
    gives the thread-sensitive calls made under it."""
    return getattr(_SYNC_CALLERS, "current", None) is not None


class RequestThreads:
    """Single-thread executors lent to requests, one each, for as long as the request lasts.

    ``borrow`` waits while ``limit`` borrowed threads are out (``settings.REQUEST_THREADS``
    unless given); ``lend`` never waits. The bound holds per event loop: a server has one.
    """

    def __init__(self, *, limit: int | None = None, idle_kept: int | None = None) -> None:
        self._limit = limit
        self._idle_kept = idle_kept
        self._idle: list[ThreadPoolExecutor] = []
        self._lent: set[ThreadPoolExecutor] = set()
        self._permits: asyncio.Semaphore | None = None
        self._permits_loop: asyncio.AbstractEventLoop | None = None
        self._borrowed: dict[ThreadPoolExecutor, asyncio.Semaphore] = {}
        self._waiting = 0

    @property
    def limit(self) -> int:
        return int(settings.REQUEST_THREADS) if self._limit is None else self._limit

    @property
    def idle_kept(self) -> int:
        """How many threads wait for later requests at most: every thread requests may hold
        at once, and the probes'."""
        return self.limit + PROBE_THREADS_KEPT if self._idle_kept is None else self._idle_kept

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def lent(self) -> int:
        return len(self._lent)

    @property
    def waiting(self) -> int:
        """Borrowers waiting for a thread to come back."""
        return self._waiting

    def lend(self) -> ThreadPoolExecutor:
        executor = (
            self._idle.pop()
            if self._idle
            else ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")
        )
        self._lent.add(executor)
        return executor

    async def borrow(self) -> ThreadPoolExecutor:
        """A thread, once fewer than ``limit`` borrowed ones are out; the first to wait is the
        first served."""
        permits = self._permits_of_this_loop()
        self._waiting += 1
        try:
            await permits.acquire()
        finally:
            self._waiting -= 1
        executor = self.lend()
        self._borrowed[executor] = permits
        return executor

    def _permits_of_this_loop(self) -> asyncio.Semaphore:
        # An asyncio semaphore belongs to the loop it first waits on; a new loop (each test
        # has its own) starts with every thread free.
        loop = asyncio.get_running_loop()
        if self._permits is None or self._permits_loop is not loop:
            self._permits, self._permits_loop = asyncio.Semaphore(self.limit), loop
        return self._permits

    def take_back(self, executor: Executor) -> bool:
        """Whether ``executor`` was lent by these threads (and is now back with them)."""
        if not isinstance(executor, ThreadPoolExecutor) or executor not in self._lent:
            return False
        self._lent.discard(executor)
        permits = self._borrowed.pop(executor, None)
        if permits is not None:
            permits.release()
        if len(self._idle) < self.idle_kept:
            self._idle.append(executor)
        else:
            executor.shutdown(wait=False)
        return True

    def close(self) -> None:
        for executor in self._idle:
            executor.shutdown(wait=False)
        self._idle.clear()

    def context(self, executor: ThreadPoolExecutor) -> ThreadSensitiveContext:
        return ThreadSensitiveContext(executor=executor)


threads = RequestThreads()


class LendsThreads:
    """For an ``ASGIHandler`` subclass: each request runs on a lent thread, not a new one."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        if not LENDABLE or _sync_caller_waits():
            async with ThreadSensitiveContext():
                await self.handle(scope, receive, send)  # type: ignore[attr-defined]
            return
        probe = scope["path"].removeprefix(scope.get("root_path", "")) in JSON_PATHS
        executor = threads.lend() if probe else await threads.borrow()
        try:
            async with threads.context(executor):
                await self.handle(scope, receive, send)  # type: ignore[attr-defined]
        finally:
            threads.take_back(executor)


def release_request_thread() -> None:
    """Give back the running request's thread before the request ends (a stream that no longer
    calls the database). A later synchronous call of the request gets a thread of its own."""
    if not RELEASABLE:
        return
    assert isinstance(_REQUEST_CONTEXT, contextvars.ContextVar)
    assert isinstance(_EXECUTORS, MutableMapping)
    context = _REQUEST_CONTEXT.get(None)
    if context is None:
        return
    executor = _EXECUTORS.pop(context, None)
    if executor is not None and not threads.take_back(executor):
        executor.shutdown(wait=False)
