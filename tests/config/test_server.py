"""The server's protocol class, and its check of what it extends in uvicorn."""

from __future__ import annotations

import asyncio
from importlib.metadata import version
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from config import server


def test_the_installed_uvicorn_has_what_the_protocol_extends() -> None:
    server.check_protocol()


def test_a_uvicorn_without_a_method_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(HttpToolsProtocol, "on_headers_complete")

    with pytest.raises(server.ProtocolChanged) as refused:
        server.check_protocol()

    assert str(refused.value) == (
        f"uvicorn {version('uvicorn')}'s HttpToolsProtocol has no on_headers_complete, which "
        "config/server.py extends to time out slow request headers; install a release that "
        "pyproject.toml allows (uv sync --locked)."
    )


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closing = False

    def write(self, data: Any) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass  # the whole request is handed over at once here

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )


async def app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def connected() -> tuple[server.HeaderTimeoutProtocol, Transport]:
    """A connection as uvicorn makes one, to an app that answers 204."""
    config = Config(app=app, http=server.PROTOCOL, lifespan="off", log_config=None)
    config.load()
    protocol = server.HeaderTimeoutProtocol(config=config, server_state=ServerState(), app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def test_headers_late_get_408_and_the_connection_closed(settings: Any) -> None:
    settings.HTTP_HEADER_TIMEOUT_SECONDS = 0.05
    slow, slow_transport = connected()
    in_time, in_time_transport = connected()

    slow.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n")
    in_time.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(0.2)

    assert slow_transport.written == server.REQUEST_TIMEOUT
    assert slow_transport.closing
    assert in_time_transport.written.startswith(b"HTTP/1.1 204 ")
    assert not in_time_transport.closing, "a kept-alive connection waits for its next request"

    in_time.data_received(b"GET /next HTTP/1.1\r\n")  # its next request, slow in turn
    await asyncio.sleep(0.2)

    assert in_time_transport.written.endswith(server.REQUEST_TIMEOUT)
    assert in_time_transport.closing


async def test_request_lines_and_headers_over_the_bound_get_400() -> None:
    big, big_transport = connected()
    body, body_transport = connected()
    padding = b"X-Padding: " + b"p" * 1024 + b"\r\n"

    big.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n")
    for _ in range(server.MAX_HEADER_BYTES // len(padding) + 1):
        big.data_received(padding)
    # A body as large, in the same read as the end of the headers, is the body's business.
    body.data_received(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n" + b"b" * 70000
    )
    await asyncio.sleep(0.05)

    assert big_transport.written.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert big_transport.written.endswith(b"Request line and headers too large.")
    assert big_transport.closing
    assert body_transport.written.startswith(b"HTTP/1.1 204 ")
