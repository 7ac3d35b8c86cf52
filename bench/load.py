"""The load generator: C simulated people, each on a keep-alive connection of their own.

Each person owns one timesheet and repeats start, get, stop, get on it, back to back, with no
think time (a closed loop: C connections always have one request in flight). What counts is
every request answered within the measured window, after the warm-up: successful ones per
second of the window are the throughput, and all of them give the latencies and the errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import ssl
import time
from collections import Counter
from dataclasses import dataclass
from itertools import cycle, islice

import httpx

from bench.stats import percentile, rounded

OPERATIONS = ("start", "get", "stop", "get")  # one person's cycle
REQUEST_TIMEOUT = 30.0  # seconds; longer counts as an error ("timeout")


@dataclass(frozen=True)
class Person:
    token: str
    timesheet_id: int


@dataclass(frozen=True)
class Sample:
    operation: str
    started: float
    latency: float
    outcome: str  # "ok", "http_<status>", or the exception's name


def _request(operation: str, timesheet_id: int) -> tuple[str, str]:
    if operation == "get":
        return "GET", f"/api/timesheets/{timesheet_id}"
    return "POST", f"/api/timesheets/{timesheet_id}/{operation}"


async def _person(
    client: httpx.AsyncClient, person: Person, offset: int, until: float, samples: list[Sample]
) -> None:
    operations = islice(cycle(OPERATIONS), offset, None)
    while time.perf_counter() < until:
        operation = next(operations)
        method, path = _request(operation, person.timesheet_id)
        started = time.perf_counter()
        try:
            response = await client.request(method, path)
            outcome = "ok" if response.status_code == 200 else f"http_{response.status_code}"
        except httpx.TimeoutException:
            outcome = "timeout"
        except httpx.HTTPError as error:
            outcome = type(error).__name__
            await asyncio.sleep(0.01)  # a refused connection fails at once: do not spin
        samples.append(Sample(operation, started, time.perf_counter() - started, outcome))


def _client(base_url: str, person: Person, tls: ssl.SSLContext) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {person.token}"},
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        timeout=REQUEST_TIMEOUT,
        # Plain HTTP needs none, but each client would load the CA bundle: tens of ms each.
        verify=tls,
    )


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Load:
    samples: list[Sample]
    window_start: float
    window_end: float
    client_cpu_seconds: float


async def generate(*, base_url: str, people: list[Person], seconds: float, warmup: float) -> Load:
    """Load the server with one connection per person; the clients are made before the clock
    starts, so that only requests are timed."""
    tls = ssl.create_default_context()
    samples: list[Sample] = []
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(_client(base_url, person, tls)) for person in people
        ]
        cpu_before = _cpu_seconds()
        window_start = time.perf_counter() + warmup
        window_end = window_start + seconds
        await asyncio.gather(
            *(
                _person(client, person, index % len(OPERATIONS), window_end, samples)
                for index, (client, person) in enumerate(zip(clients, people, strict=True))
            )
        )
        cpu_after = _cpu_seconds()
    return Load(
        samples=[s for s in samples if window_start <= s.started + s.latency <= window_end],
        window_start=window_start,
        window_end=window_end,
        client_cpu_seconds=cpu_after - cpu_before,
    )


def summarize(load: Load) -> dict[str, object]:
    """Requests per second, latency percentiles and errors, overall and per operation."""
    window = load.window_end - load.window_start
    ok = [s for s in load.samples if s.outcome == "ok"]
    errors = Counter(s.outcome for s in load.samples if s.outcome != "ok")

    def latency(samples: list[Sample]) -> dict[str, float | None]:
        values = [s.latency * 1000 for s in samples]
        return {
            "p50_ms": rounded(percentile(values, 0.50), 2),
            "p99_ms": rounded(percentile(values, 0.99), 2),
            "max_ms": rounded(max(values) if values else None, 2),
        }

    return {
        "requests": len(load.samples),
        "rps": rounded(len(ok) / window, 1),
        **latency(ok),
        "errors": sum(errors.values()),
        "errors_by_kind": dict(errors),
        "by_operation": {
            operation: {
                "requests": len([s for s in load.samples if s.operation == operation]),
                **latency([s for s in ok if s.operation == operation]),
            }
            for operation in dict.fromkeys(OPERATIONS)
        },
        "client_cpu_seconds": rounded(load.client_cpu_seconds, 2),
    }
