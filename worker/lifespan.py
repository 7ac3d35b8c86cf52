"""An ASGI lifespan handler around an application that does not speak lifespan (Django).

Django's ASGI handler refuses the ``lifespan`` scope, so servers run with ``--lifespan on``
need something to answer it. This wrapper answers it, running async hooks at startup and at
shutdown, and passes every other scope to the wrapped application.
"""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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
