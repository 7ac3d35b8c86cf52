"""This process's one runner: started once, kept alive by a strong reference, stopped cleanly.

Where it runs depends on who asks:

- on the serving event loop, when the ASGI server's loop asks (lifespan startup, or a view
  served by uvicorn, sync views included): the loop lives as long as the process;
- on an event loop of its own in a daemon thread otherwise (a WSGI server or ``runserver``, where
  an async view runs in a one-off loop that is closed, cancelling its tasks, after the
  response).

Either way the runner starts in a fresh ``contextvars`` context, so nothing of the request that
started it (its request id, its thread-sensitive executor) leaks into the runner.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from worker.registry import discover
from worker.runner import Runner

logger = structlog.get_logger("worker")

type Mode = Literal["serving_loop", "own_thread"]


@dataclass
class _Hosted:
    runner: Runner
    mode: Mode
    loop: asyncio.AbstractEventLoop
    task: asyncio.Task[None] | None = None
    thread: threading.Thread | None = None

    def alive(self) -> bool:
        if self.task is not None:
            return not self.task.done()
        return self.thread is not None and self.thread.is_alive()


_lock = threading.Lock()
_serving_loop: asyncio.AbstractEventLoop | None = None
_hosted: _Hosted | None = None


def build_runner() -> Runner:
    """A runner for the jobs of every installed app, as settings configure them."""
    return Runner(jobs=discover())


_factory: Callable[[], Runner] = build_runner


def mark_serving_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    """Record the ASGI server's loop: the one loop that lives as long as the process."""
    global _serving_loop  # noqa: PLW0603
    _serving_loop = loop


def serving_loop_marked() -> bool:
    """Whether an ASGI server's loop was seen: the runner then belongs on it."""
    return _serving_loop is not None


def set_factory(factory: Callable[[], Runner]) -> Callable[[], Runner]:
    """Replace how the runner is built (tests use small jobs); return the previous factory."""
    global _factory
    previous, _factory = _factory, factory
    return previous


def current() -> Runner | None:
    hosted = _hosted
    return hosted.runner if hosted is not None and hosted.alive() else None


def ensure_running() -> Runner:
    """Start this process's runner unless it runs already; return it. Thread-safe."""
    global _hosted  # noqa: PLW0603
    serving = _serving_loop
    if serving is not None and serving.is_running() and not _runs_on(serving):
        with _lock:
            if _hosted is not None and _hosted.alive() and not _hosted.runner.stopping:
                return _hosted.runner
        # A synchronous view served by the ASGI server runs in a worker thread: the runner
        # belongs on the server's loop all the same. Asked without holding the lock, which
        # the loop takes to start it.
        return asyncio.run_coroutine_threadsafe(_ensure_running_on_loop(), serving).result()
    with _lock:
        if _hosted is not None and _hosted.alive() and not _hosted.runner.stopping:
            return _hosted.runner
        runner = _factory()
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None and loop is _serving_loop:
            task = loop.create_task(
                runner.run(), name="worker-runner", context=contextvars.Context()
            )
            task.add_done_callback(_report_end)
            _hosted = _Hosted(runner=runner, mode="serving_loop", loop=loop, task=task)
        else:
            _hosted = _host_in_thread(runner)
        logger.info("runner_hosted", mode=_hosted.mode)
        return runner


def _runs_on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def _ensure_running_on_loop() -> Runner:
    return ensure_running()


async def aensure_running() -> Runner:
    """``ensure_running`` from async code: also lets a runner just started on this loop take
    its first step, so that its status is current when the caller reads it."""
    runner = ensure_running()
    await asyncio.sleep(0)
    return runner


def status() -> dict[str, Any]:
    hosted = _hosted
    if hosted is None:
        return {"running": False, "mode": None, "jobs": []}
    return {**hosted.runner.status(), "mode": hosted.mode}


async def astop() -> None:
    """Stop the runner gracefully and wait for it (ASGI lifespan shutdown)."""
    hosted = _take()
    if hosted is None:
        return
    hosted.runner.request_stop()
    if hosted.task is not None:
        await asyncio.shield(hosted.task)
    elif hosted.thread is not None:
        await asyncio.to_thread(hosted.thread.join)


def stop(timeout: float | None = None) -> None:
    """Stop the runner gracefully from synchronous code and wait up to ``timeout`` seconds."""
    hosted = _take()
    if hosted is None:
        return
    hosted.runner.request_stop()
    if hosted.thread is not None:
        hosted.thread.join(timeout)
    elif hosted.task is not None and hosted.loop.is_running() and not _on_loop(hosted.loop):
        task = hosted.task
        done = threading.Event()
        hosted.loop.call_soon_threadsafe(task.add_done_callback, lambda _: done.set())
        done.wait(timeout)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _take() -> _Hosted | None:
    global _hosted
    with _lock:
        hosted, _hosted = _hosted, None
    return hosted


def _report_end(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        logger.warning("runner_cancelled")
    elif (error := task.exception()) is not None:
        logger.error("runner_died", error=repr(error), exc_info=error)


def _host_in_thread(runner: Runner) -> _Hosted:
    started = threading.Event()
    loops: list[asyncio.AbstractEventLoop] = []

    def host() -> None:
        # A new thread starts with an empty context: nothing of the caller's leaks in.
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loops.append(loop)
        task = loop.create_task(runner.run(), name="worker-runner")
        task.add_done_callback(_report_end)
        # Scheduled after the task's first step, so the caller sees a runner that has begun.
        loop.call_soon(started.set)
        try:
            # wait() does not raise what the task raised: _report_end has logged it.
            loop.run_until_complete(asyncio.wait({task}))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    thread = threading.Thread(target=host, name="worker-loop", daemon=True)
    thread.start()
    started.wait()
    return _Hosted(runner=runner, mode="own_thread", loop=loops[0], thread=thread)


# A runner in a daemon thread would die mid-run at exit; stop it like a server would. It must
# stop before the interpreter refuses new work to thread pools, which the final accrual needs:
# threading's exit hooks (where concurrent.futures shuts its pools) run before atexit's, in the
# reverse order of registration, so this one, registered later, runs first.
threading._register_atexit(stop, 15.0)  # type: ignore[attr-defined]
