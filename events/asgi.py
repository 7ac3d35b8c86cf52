"""Cutting a stream whose client has stopped reading.

A stream ends by itself once its subscription is closed (its client fell behind, or the server
is stopping), the next time it runs. But while its client reads nothing, it does not run: Django
waits in the server's ``send`` for room in the connection's buffers, which may never come, and
the connection would stay open (and hold uvicorn's graceful shutdown) for as long as the client
likes. ``cuttable_streams`` runs each request for the stream in a task of its own, which the
stream cancels ``CUT_GRACE`` after its subscription closed; the server then closes the
connection (uvicorn logs that the response was not completed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from worker.lifespan import ASGIApp, Receive, Scope, Send

logger = structlog.get_logger(__name__)

STREAM_PATH = "/api/events"
CUT_GRACE = 5.0  # seconds a closed stream has to send its last bytes before it is cut

_cuttable: ContextVar[bool] = ContextVar("cuttable_stream", default=False)


def cutter() -> Callable[[], object] | None:
    """For the running stream: what cuts it ``CUT_GRACE`` from when it is called, unless it has
    ended by then; None outside ``cuttable_streams``."""
    task = asyncio.current_task()
    if not _cuttable.get() or task is None:
        return None
    loop = asyncio.get_running_loop()
    return lambda: loop.call_later(CUT_GRACE, task.cancel)


def cuttable_streams(app: ASGIApp) -> ASGIApp:
    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != STREAM_PATH:
            await app(scope, receive, send)
            return
        token = _cuttable.set(True)
        try:
            inner = asyncio.ensure_future(app(scope, receive, send))
        finally:
            _cuttable.reset(token)
        try:
            await inner
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if inner.cancelled() and current is not None and not current.cancelling():
                logger.warning("event_stream_cut", grace_seconds=CUT_GRACE)
                return
            inner.cancel()
            raise

    return guarded
