from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

from tests.processes import ROOT

TWO_SIGNALS = """
import asyncio
from worker.signals import stop_on_signals

async def main():
    with stop_on_signals(asyncio.get_running_loop(), stop=lambda: print("stopping", flush=True)):
        print("ready", flush=True)
        await asyncio.sleep(60)  # a graceful stop that takes its time

asyncio.run(main())
"""


def test_the_first_signal_stops_gracefully_and_a_second_exits_at_once() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", TWO_SIGNALS],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        process.send_signal(signal.SIGTERM)
        said = [process.stdout.readline() for _ in range(2)]  # a log line, then ours
        assert "stop_requested" in said[0]
        assert said[1].strip() == "stopping"
        assert process.poll() is None, "the first signal does not kill"

        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        code = process.wait(10)

        assert code == 128 + signal.SIGINT
        assert time.monotonic() - sent < 5
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_previous_handlers_are_restored() -> None:
    def mine(number: int, frame: object) -> None:
        return None

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        from worker.signals import stop_on_signals

        async def main() -> None:
            stopped = asyncio.Event()
            with stop_on_signals(asyncio.get_running_loop(), stop=stopped.set):
                os.kill(os.getpid(), signal.SIGTERM)
                await asyncio.wait_for(stopped.wait(), timeout=5)

        asyncio.run(main())

        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)
