"""One process's fan-out of new events to its stream subscribers.

The broker follows the outbox past the highest id it has seen and hands each new event to the
subscribers it concerns. It learns that there is something to read:

- on PostgreSQL, from ``NOTIFY`` (the ``events`` migration's trigger sends one per inserting
  statement, delivered when its transaction commits) on ONE ``LISTEN`` connection of the
  process's own, outside Django's pool, reconnected with a backoff when it breaks;
- on SQLite, by reading the outbox at most ``POLL_INTERVAL`` apart.

A notification only says "look": rows are read from the outbox by id, so none is lost or
duplicated when notifications are collapsed (PostgreSQL sends one per channel and payload per
transaction) or missed while the connection was down. The broker runs only while it has
subscribers. Each subscriber has a bounded queue: one that reads too slowly is closed rather than
buffered without bound, and must reconnect and resume from the outbox with its last event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import signal
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import psycopg
import structlog
from asgiref.sync import sync_to_async
from django.db import connection

from events.models import Event

logger = structlog.get_logger(__name__)

CHANNEL = "events"  # the NOTIFY channel; the events migration's trigger names it too
POLL_INTERVAL = 1.0  # seconds between two reads of the outbox on SQLite
# On PostgreSQL, a read even without notification: a safety net, not the way events arrive.
NOTIFIED_POLL_INTERVAL = 30.0  # seconds
READ_BATCH = 500  # events read from the outbox per query
QUEUE_CAPACITY = 1_000  # events a subscriber may fall behind before it is disconnected
TIMER_SLACK = 0.002  # seconds: event loops may run a timer this much before its time
RECONNECT_FIRST_DELAY = 0.5  # seconds before the first attempt to reconnect LISTEN
RECONNECT_MAX_DELAY = 30.0  # seconds: the backoff doubles up to this
# libpq takes what Django's connection parameters give, less the keys that are Django's or
# psycopg's own.
_NOT_LIBPQ = ("cursor_factory", "context", "prepare_threshold", "pool")


class Closed(Exception):
    """The subscription ended: its subscriber fell behind, or the process is shutting down."""


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(eq=False)
class Subscription:
    """What one stream receives: every new event of ``owner_id`` (of everyone when None).

    Events wait in a deque and the stream in one future, rather than in an ``asyncio.Queue``
    under ``asyncio.timeout``: a fan-out hands the same event to thousands of streams, and the
    queue's and the timeout's bookkeeping per stream and per event was most of its cost. For
    the same reason the timer that ends a quiet wait outlives the waits: it is set once and,
    when it fires during a later wait, set again for that wait's end, rather than set and
    cancelled around every event.
    """

    owner_id: int | None
    everyone: bool
    capacity: int = field(default_factory=lambda: QUEUE_CAPACITY)
    pending: deque[Event] = field(default_factory=deque)
    reason: str = ""  # why it was closed: "slow" or "shutdown"
    on_close: Callable[[], object] | None = None
    _waiter: asyncio.Future[None] | None = None
    _quiet_until = 0.0  # loop time at which the current wait ends without an event
    _timer: asyncio.TimerHandle | None = None
    _timer_at = 0.0

    def concerns(self, event: Event) -> bool:
        return self.everyone or event.owner_id == self.owner_id

    def offer(self, event: Event) -> bool:
        """Queue the event; False when the subscriber has fallen too far behind."""
        if len(self.pending) >= self.capacity:
            return False
        self.pending.append(event)
        if self._waiter is not None:
            _wake(self._waiter)
        return True

    def close(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason
            # At once: what is queued is read again from the outbox when the client resumes.
            self.pending.clear()
            if self._waiter is not None:
                _wake(self._waiter)
            if self.on_close is not None:
                self.on_close()

    async def next(self, *, within: float) -> Event | None:
        """The next event, or None after ``within`` seconds without one; raises ``Closed``."""
        if not self.pending and not self.reason:
            loop = asyncio.get_running_loop()
            self._waiter = waiter = loop.create_future()
            self._quiet_until = until = loop.time() + within
            if self._timer is None or self._timer_at > until:
                self._set_timer(loop, until)
            try:
                await waiter
            finally:
                self._waiter = None
        if self.reason:
            raise Closed(self.reason)
        return self.pending.popleft() if self.pending else None

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _set_timer(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        self.stop_timer()
        self._timer, self._timer_at = loop.call_at(at, self._timer_fired, loop), at

    def _timer_fired(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        if self._waiter is None:
            return  # not waiting: the next wait sets a timer of its own
        if loop.time() < self._quiet_until - TIMER_SLACK:
            self._set_timer(loop, self._quiet_until)  # an event came since it was set
        else:
            _wake(self._waiter)


def _release_connection() -> None:
    if not connection.in_atomic_block:  # a test's transaction
        connection.close()


def _listen_parameters() -> dict[str, Any]:
    parameters = connection.get_connection_params()
    for key in _NOT_LIBPQ:
        parameters.pop(key, None)
    return parameters


class Broker:
    """The fan-out of one event loop: create it on the loop that serves the streams."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.subscriptions: set[Subscription] = set()
        self.last_id = 0
        self.listening = False  # whether the LISTEN connection is up (PostgreSQL)
        self._wake = asyncio.Event()
        self._starting = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    async def subscribe(self, *, owner_id: int | None, everyone: bool = False) -> Subscription:
        """Register a subscriber; every event committed from now on reaches it.

        An event committed before this returns is in the outbox for the caller to read; one
        committed after is queued (some may be both: the caller skips ids it has sent).
        """
        subscription = Subscription(owner_id=owner_id, everyone=everyone)
        if self._closing:
            subscription.close("shutdown")
            return subscription
        async with self._starting:
            if not self._tasks:
                latest = await Event.objects.order_by("-id").values_list("id", flat=True).afirst()
                self.last_id = latest or 0
                self._start()
                logger.info("event_broker_started", last_id=self.last_id)
        # No await between here and the fan-out's check of the set: nothing is missed.
        self.subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.stop_timer()
        self.subscriptions.discard(subscription)
        if not self.subscriptions:
            self._stop()

    def close(self) -> list[asyncio.Task[None]]:
        """End every subscription (the process is shutting down) and stop following.

        Returns the tasks it cancelled, for a caller that can wait for them to end.
        """
        self._closing = True
        for subscription in list(self.subscriptions):
            subscription.close("shutdown")
        self.subscriptions.clear()
        return self._stop()

    def _start(self) -> None:
        # A context of its own: the request that happens to start the broker ends long before
        # it does, and its bindings (request id, thread-sensitive executor) must not outlive it.
        context = contextvars.Context()
        self._tasks = [self.loop.create_task(self._follow(), context=context)]
        if connection.vendor == "postgresql":
            self._tasks.append(self.loop.create_task(self._listen(), context=context))

    def _stop(self) -> list[asyncio.Task[None]]:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        self.listening = False
        return tasks

    async def _follow(self) -> None:
        interval = NOTIFIED_POLL_INTERVAL if connection.vendor == "postgresql" else POLL_INTERVAL
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._read()
            except Exception as error:  # noqa: BLE001  (the database may be away: retry later)
                logger.warning("event_broker_read_failed", error=str(error).strip())
            # Back to the pool between reads: a connection broken meanwhile is not reused.
            await sync_to_async(_release_connection)()

    async def _read(self) -> None:
        while True:
            events = [
                event
                async for event in Event.objects.filter(id__gt=self.last_id).order_by("id")[
                    :READ_BATCH
                ]
            ]
            for event in events:
                self._fan_out(event)
                self.last_id = event.pk
            if len(events) < READ_BATCH:
                return

    def _fan_out(self, event: Event) -> None:
        for subscription in list(self.subscriptions):
            if subscription.concerns(event) and not subscription.offer(event):
                subscription.close("slow")
                self.subscriptions.discard(subscription)
                logger.warning(
                    "event_subscriber_too_slow",
                    owner_id=subscription.owner_id,
                    queued=subscription.capacity,
                    event_id=event.pk,
                )

    async def _listen(self) -> None:
        delay = RECONNECT_FIRST_DELAY
        while True:
            try:
                listener = await psycopg.AsyncConnection.connect(
                    **_listen_parameters(), autocommit=True
                )
            except psycopg.Error as error:
                logger.warning(
                    "event_listen_connect_failed", error=str(error).strip(), retry_in=delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
                continue
            try:
                async with listener:
                    await listener.execute(f"LISTEN {CHANNEL}")
                    self.listening = True
                    delay = RECONNECT_FIRST_DELAY
                    # Whatever committed while no one listened is read now.
                    self._wake.set()
                    async for _ in listener.notifies():
                        self._wake.set()
            except psycopg.Error as error:
                logger.warning("event_listen_lost", error=str(error).strip(), retry_in=delay)
            self.listening = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_DELAY)


_broker: Broker | None = None


def broker() -> Broker:
    """The broker of the running loop (the server's: one per process)."""
    global _broker  # noqa: PLW0603
    loop = asyncio.get_running_loop()
    if _broker is None or _broker.loop is not loop:
        _broker = Broker()
    return _broker


def close() -> list[asyncio.Task[None]]:
    """End every stream of this process and stop following the outbox (on the serving loop)."""
    global _broker  # noqa: PLW0603
    tasks = [] if _broker is None else _broker.close()
    _broker = None
    return tasks


async def aclose() -> None:
    """``close``, and wait for the broker's tasks to end (ASGI lifespan shutdown)."""
    await asyncio.gather(*close(), return_exceptions=True)


_previous_handlers: dict[signal.Signals, Any] = {}
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def close_streams_on_signal() -> None:
    """End the streams as soon as the server is told to stop (ASGI lifespan startup).

    uvicorn answers SIGTERM by waiting for every open response to finish before it sends
    ``lifespan.shutdown``, and says nothing to the application meanwhile: a stream, which never
    finishes by itself, would hold the shutdown open. So the broker hears the signal too: its
    handler runs the server's, then ends the streams on the serving loop.
    """
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set signal handlers
    loop = asyncio.get_running_loop()
    for number in SHUTDOWN_SIGNALS:
        previous = signal.getsignal(number)
        _previous_handlers[number] = previous

        def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
            if callable(previous):
                previous(signum, frame)
            loop.call_soon_threadsafe(close)

        signal.signal(number, handler)


async def restore_signal_handlers() -> None:
    """Give the signals back to their previous handlers (ASGI lifespan shutdown)."""
    if threading.current_thread() is not threading.main_thread():
        return
    while _previous_handlers:
        number, previous = _previous_handlers.popitem()
        signal.signal(number, previous)
