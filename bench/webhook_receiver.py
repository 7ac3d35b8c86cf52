"""A webhook receiver for the benchmark: answers every request 204 after
``BENCH_RECEIVER_DELAY`` seconds, as a slow endpoint would. Served by uvicorn."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

DELAY = float(os.environ.get("BENCH_RECEIVER_DELAY", "0.2"))  # seconds

type Message = MutableMapping[str, Any]


async def app(
    scope: Message,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the whole body, as a real receiver verifying it would
        message = await receive()
        more = message.get("more_body", False)
    await asyncio.sleep(DELAY)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
