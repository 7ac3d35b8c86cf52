"""An ASGI lifespan handler around an application that does not speak lifespan (Django).

Django's ASGI handler refuses the ``lifespan`` scope, so servers run with ``--lifespan on``
need something to answer it. ``Lifespan`` answers it, running async hooks at startup and at
shutdown, and passes every other scope to the wrapped application. ``with_worker`` builds the
one this project uses: the runner starts at startup and stops gracefully at shutdown.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from django.conf import settings

from config import collector
from events import broker
from worker import process

type Scope = dict[str, Any]
type Receive = Callable[[], Awaitable[Mapping[str, Any]]]
type Send = Callable[[Mapping[str, Any]], Awaitable[None]]
type ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
type Hook = Callable[[], Awaitable[None]]


class Lifespan:
    def __init__(
        self,
        app: ASGIApp,
        *,
        on_startup: Sequence[Hook] = (),
        on_shutdown: Sequence[Hook] = (),
    ) -> None:
        self.app = app
        self.on_startup = tuple(on_startup)
        self.on_shutdown = tuple(on_shutdown)
        self._marked = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._marked:
            # Whatever scope comes first, it comes on the server's own, long-lived loop.
            process.mark_serving_loop(asyncio.get_running_loop())
            self._marked = True
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                failure = await self._run(self.on_startup)
                if failure is None:
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.startup.failed", "message": failure})
                    return
            elif message["type"] == "lifespan.shutdown":
                failure = await self._run(self.on_shutdown)
                if failure is None:
                    await send({"type": "lifespan.shutdown.complete"})
                else:
                    await send({"type": "lifespan.shutdown.failed", "message": failure})
                return

    @staticmethod
    async def _run(hooks: Sequence[Hook]) -> str | None:
        for hook in hooks:
            try:
                await hook()
            except Exception:  # noqa: BLE001  (the server reports it and refuses to start)
                return traceback.format_exc()
        return None


async def _start_worker() -> None:
    if settings.WORKER_AUTOSTART:
        process.ensure_running()


def with_worker(app: ASGIApp) -> Lifespan:
    """The application, with the periodic jobs started and stopped by the ASGI lifespan."""
    return Lifespan(
        app,
        on_startup=[collector.tune, _start_worker, broker.close_streams_on_signal],
        on_shutdown=[broker.aclose, broker.restore_signal_handlers, process.astop],
    )
