"""How the project's server speaks HTTP: uvicorn's httptools protocol, with header bounds.

uvicorn bounds the wait between two requests of a connection (its keep-alive timeout) but not
the time a client takes to send a request's headers: a client that sends one header line every
few seconds holds its connection, and a file descriptor, for as long as it likes, and enough of
them deny service to everyone else. ``HeaderTimeoutProtocol`` closes a connection whose request
headers are not all in within ``HTTP_HEADER_TIMEOUT_SECONDS`` of its first byte (or of the
connection, for the first request), after answering 408. httptools, unlike h11, sets no
bound on the size of a request's line and headers either: more than ``MAX_HEADER_BYTES`` of
them are answered 400, as h11 answered.

Pass it as uvicorn's ``http`` (``--http config.server:HeaderTimeoutProtocol``). It extends
methods of uvicorn's ``HttpToolsProtocol``, which pyproject.toml bounds to the releases checked;
``check_protocol`` makes another release fail at import, naming what changed.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import version
from typing import Any

from django.conf import settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PROTOCOL = "config.server:HeaderTimeoutProtocol"  # for uvicorn's http option
LOOP = "uvloop"
MAX_HEADER_BYTES = 64 * 1024  # bytes of request line and headers
REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
# The methods of HttpToolsProtocol that are extended here, and the attributes they read.
EXTENDED = (
    "connection_made",
    "connection_lost",
    "data_received",
    "on_message_begin",
    "on_headers_complete",
    "send_400_response",
)
READ = ("loop", "transport")
ABORT_EXTENSION = "timesheets.abort"  # in a request's ASGI scope: drop its connection at once


class ProtocolChanged(RuntimeError):
    """uvicorn's httptools protocol no longer has what the header timeout extends."""


def check_protocol() -> None:
    missing = [name for name in EXTENDED if not callable(getattr(HttpToolsProtocol, name, None))]
    source = HttpToolsProtocol.__init__.__code__.co_names + (
        HttpToolsProtocol.connection_made.__code__.co_names
    )
    missing += [f"self.{name}" for name in READ if name not in source]
    if missing:
        raise ProtocolChanged(
            f"uvicorn {version('uvicorn')}'s HttpToolsProtocol has no {', '.join(missing)}, "
            "which config/server.py extends to time out slow request headers; install a "
            "release that pyproject.toml allows (uv sync --locked)."
        )


check_protocol()


class HeaderTimeoutProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers_due: asyncio.TimerHandle | None = None
        self._header_bytes = 0  # received since the headers were expected

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect_headers()

    def data_received(self, data: bytes) -> None:
        expected = self._headers_due is not None
        if expected:
            self._header_bytes += len(data)
        super().data_received(data)
        # Counted before parsing, checked after: bytes of a body that came with the end of the
        # headers are not held against them.
        if (
            expected
            and self._headers_due is not None
            and self._header_bytes > MAX_HEADER_BYTES
            and not self.transport.is_closing()
        ):
            self._headers_arrived()
            self.send_400_response("Request line and headers too large.")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._expect_headers()  # a later request of a kept-alive connection
        # Lets the application drop a connection whose client stopped reading (events.asgi):
        # closing it would wait, forever, for its buffered bytes to be read first.
        self.scope["extensions"] = {ABORT_EXTENSION: {"abort": self.transport.abort}}

    def on_headers_complete(self) -> None:
        self._headers_arrived()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_arrived()
        super().connection_lost(exc)

    def _expect_headers(self) -> None:
        if self._headers_due is None:
            timeout: float = settings.HTTP_HEADER_TIMEOUT_SECONDS
            self._headers_due = self.loop.call_later(timeout, self._headers_late)

    def _headers_arrived(self) -> None:
        self._header_bytes = 0
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None

    def _headers_late(self) -> None:
        self._headers_due = None
        if not self.transport.is_closing():
            self.transport.write(REQUEST_TIMEOUT)
            self.transport.close()
