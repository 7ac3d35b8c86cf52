"""A real HTTP server on 127.0.0.1, in a thread, that records what webhooks it receives."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """``answer`` says, for the n-th request (from 0), which status to send and after how many
    seconds."""

    port: int = 0
    answer: Callable[[int], tuple[int, float]] = lambda n: (204, 0.0)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    most_in_flight: int = 0  # requests it was answering at once, at most

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ids(self) -> list[str]:
        with self.lock:
            return [request.headers["webhook-id"] for request in self.received]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with receiver.lock:
            n = len(receiver.received)
            receiver.in_flight += 1
            receiver.most_in_flight = max(receiver.most_in_flight, receiver.in_flight)
            receiver.received.append(
                Received(
                    path=self.path,
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=body,
                )
            )
        status, delay = receiver.answer(n)
        if delay:
            time.sleep(delay)
        with receiver.lock:
            receiver.in_flight -= 1
        try:
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()
        except OSError:
            pass  # the sender gave up waiting (a timeout test)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the tests read what was received, not an access log


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a request still sleeping does not hold up the test's end
    request_queue_size = 256  # connections waiting to be accepted: many senders at once
    receiver: Receiver


@contextmanager
def receiving(answer: Callable[[int], tuple[int, float]] | None = None) -> Iterator[Receiver]:
    server = _Server(("127.0.0.1", 0), _Handler)
    receiver = Receiver(port=server.server_address[1])
    if answer is not None:
        receiver.answer = answer
    server.receiver = receiver
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
