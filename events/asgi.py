"""Cutting a stream whose client has stopped reading.

A stream ends by itself once its subscription is closed (its client fell behind, or the server
is stopping), the next time it runs. But while its client reads nothing, it does not run: Django
waits in the server's ``send`` for room in the connection's buffers, which may never come, and
the connection would stay open (and hold uvicorn's graceful shutdown) for as long as the client
likes. ``cuttable_streams`` lets the stream cut it ``CUT_GRACE`` after its subscription closed:
under ``manage.py serve`` by dropping the connection (``config.server``'s abort extension), which
releases the ``send``; under another server by cancelling the request's task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import structlog

from config.server import ABORT_EXTENSION

if TYPE_CHECKING:
    from worker.lifespan import ASGIApp, Receive, Scope, Send

logger = structlog.get_logger(__name__)

STREAM_PATH = "/api/events"
CUT_GRACE = 5.0  # seconds a closed stream has to send its last bytes before it is cut

_cut: ContextVar[Callable[[], None] | None] = ContextVar("cut_stream", default=None)


def cutter() -> Callable[[], object] | None:
    """For the running stream: what cuts it ``CUT_GRACE`` from when it is called, unless it has
    ended by then; None outside ``cuttable_streams``."""
    cut = _cut.get()
    if cut is None:
        return None
    loop = asyncio.get_running_loop()
    return lambda: loop.call_later(CUT_GRACE, cut)


def cuttable_streams(app: ASGIApp) -> ASGIApp:
    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != STREAM_PATH:
            await app(scope, receive, send)
            return
        extension: dict[str, Any] = (scope.get("extensions") or {}).get(ABORT_EXTENSION, {})
        abort: Callable[[], None] | None = extension.get("abort")
        inner: asyncio.Future[None] | None = None

        def cut() -> None:
            if inner is None or inner.done():
                return
            logger.warning("event_stream_cut", grace_seconds=CUT_GRACE, aborted=abort is not None)
            if abort is not None:
                abort()
            else:
                inner.cancel()

        token = _cut.set(cut)
        try:
            inner = asyncio.ensure_future(app(scope, receive, send))
        finally:
            _cut.reset(token)
        try:
            await inner
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if inner.cancelled() and current is not None and not current.cancelling():
                return  # cut: the server closes the connection
            inner.cancel()
            raise

    return guarded
