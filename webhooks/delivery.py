"""Sending claimed deliveries: concurrently, signed as Standard Webhooks says, each request
bounded by a timeout, to the address its URL was checked to resolve to."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import ssl
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import httpx
import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from standardwebhooks.webhooks import Webhook

from timesheets.schemas import api_instant
from webhooks import network
from webhooks.exceptions import UrlRefused
from webhooks.services import Claimed, Outcome, delivery_claim, delivery_fan_out, delivery_record

logger = structlog.get_logger("webhooks")

USER_AGENT = "timesheets-webhooks/1"
CONNECTIONS_PER_CLIENT = 10  # the most connections one httpx client keeps (see send_all)


def body(claimed: Claimed) -> bytes:
    return json.dumps(
        {"type": claimed.type, "timestamp": api_instant(claimed.occurred_at), "data": claimed.data},
        separators=(",", ":"),
    ).encode()


def signed_headers(claimed: Claimed, payload: bytes, *, sent_at: datetime) -> dict[str, str]:
    # The event id is the same on every attempt: receivers use it to ignore a repeat.
    message_id = str(claimed.event_id)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(claimed.secret).sign(message_id, sent_at, payload),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


async def send(client: httpx.AsyncClient, claimed: Claimed) -> Outcome:
    """One attempt; never raises for what the endpoint or the network does."""

    def outcome(status_code: int | None, latency_ms: float | None, error: str) -> Outcome:
        return Outcome(
            delivery_id=claimed.delivery_id,
            subscription_id=claimed.subscription_id,
            status_code=status_code,
            latency_ms=latency_ms,
            error=error,
        )

    started = time.perf_counter()
    try:
        target = await network.atarget(claimed.url)
    except UrlRefused as refused:
        return outcome(None, None, refused.message)
    payload = body(claimed)
    headers = signed_headers(claimed, payload, sent_at=datetime.now(UTC))
    if target.host_header is not None:
        headers["host"] = target.host_header
    try:
        # httpx's timeout bounds each phase; this bounds the whole request.
        async with asyncio.timeout(settings.WEBHOOKS_TIMEOUT_SECONDS):
            # Streamed and closed unread: only the status matters, whatever the body's size.
            async with client.stream("POST", target.url, content=payload, headers=headers) as (
                response
            ):
                status_code = response.status_code
    except (TimeoutError, httpx.TimeoutException):
        latency = round((time.perf_counter() - started) * 1000, 3)
        return outcome(None, latency, f"No answer within {settings.WEBHOOKS_TIMEOUT_SECONDS:g} s.")
    except httpx.HTTPError as failure:
        latency = round((time.perf_counter() - started) * 1000, 3)
        return outcome(None, latency, f"{type(failure).__name__}: {failure}")
    latency = round((time.perf_counter() - started) * 1000, 3)
    error = "" if 200 <= status_code < 300 else f"Answered {status_code}."
    return outcome(status_code, latency, error)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One for every client: loading the system's certificates takes tens of milliseconds."""
    return ssl.create_default_context()


async def send_all(claimed: Sequence[Claimed]) -> list[Outcome]:
    """Send every delivery, at most ``WEBHOOKS_CONCURRENCY`` at once.

    That many workers take deliveries one after the other. They share clients of
    ``CONNECTIONS_PER_CLIENT`` connections each rather than one client: httpx's pool does work in
    proportion to its queued requests times its connections at every request, which at a
    hundred connections costs more CPU than the requests themselves.
    """
    if not claimed:
        return []
    workers = min(settings.WEBHOOKS_CONCURRENCY, len(claimed))
    per_client = min(CONNECTIONS_PER_CLIENT, workers)
    pending = iter(enumerate(claimed))
    outcomes: list[Outcome | None] = [None] * len(claimed)

    async def work(client: httpx.AsyncClient) -> None:
        # One event loop: taking the next item from the shared iterator needs no lock.
        for index, item in pending:
            outcomes[index] = await send(client, item)

    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    timeout=httpx.Timeout(settings.WEBHOOKS_TIMEOUT_SECONDS),
                    limits=httpx.Limits(
                        max_connections=per_client, max_keepalive_connections=per_client
                    ),
                    # Redirects would lead past the address check; proxies from the
                    # environment too.
                    follow_redirects=False,
                    trust_env=False,
                    verify=_tls_context(),
                )
            )
            for _ in range(math.ceil(workers / per_client))
        ]
        await asyncio.gather(*(work(clients[n // per_client]) for n in range(workers)))
    return [outcome for outcome in outcomes if outcome is not None]


async def webhook_deliver(*, now: datetime | None = None) -> int:
    """One run: fan new events out, then claim, send and record due deliveries.

    Returns how many deliveries were attempted.
    """
    fanned_out = await sync_to_async(delivery_fan_out)(now=now)
    claimed = await sync_to_async(delivery_claim)(limit=settings.WEBHOOKS_BATCH_SIZE, now=now)
    if not claimed:
        return 0
    started = time.perf_counter()
    outcomes = await send_all(claimed)
    await sync_to_async(delivery_record)(outcomes=outcomes, now=now)
    delivered = sum(outcome.succeeded for outcome in outcomes)
    logger.info(
        "webhooks_sent",
        fanned_out=fanned_out,
        attempted=len(outcomes),
        delivered=delivered,
        failed=len(outcomes) - delivered,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )
    return len(outcomes)
