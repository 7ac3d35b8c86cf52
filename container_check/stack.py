"""compose.yaml brought up as a project of the check's own, and what its containers say."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from container_check.engine import Engine
from container_check.shell import CheckFailed, run, tail

PROJECT = "timesheets-check"  # never the name of a stack someone runs from the repository
COMMAND_TIMEOUT = 180.0  # seconds for one compose command
POLL_INTERVAL = 0.25  # seconds

type Event = dict[str, Any]


@dataclass
class Stack:
    engine: Engine
    root: Path
    files: list[Path]
    environment: dict[str, str] = field(default_factory=dict)

    def compose(
        self,
        *arguments: str,
        timeout: float = COMMAND_TIMEOUT,
        input: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        files = [argument for path in self.files for argument in ("--file", str(path))]
        return run(
            [
                *self.engine.compose,
                "--project-name",
                PROJECT,
                "--project-directory",
                str(self.root),
                *files,
                *arguments,
            ],
            timeout=timeout,
            env=self.environment,
            input=input,
            check=check,
        )

    def manage(
        self, service: str, *arguments: str, env: Mapping[str, str] | None = None, input: str = ""
    ) -> subprocess.CompletedProcess[str]:
        """``python manage.py ...`` in the service's running container."""
        variables = [
            option for key, value in (env or {}).items() for option in ("-e", f"{key}={value}")
        ]
        return self.compose(
            "exec", "-T", *variables, service, "python", "manage.py", *arguments, input=input
        )

    def containers(self, service: str) -> list[str]:
        """The service's containers, running or not, by id."""
        listed = self.compose("ps", "--all", "--quiet", service)
        return listed.stdout.split()

    def state(self, container: str) -> dict[str, Any]:
        inspected = self.engine("inspect", "--format", "{{json .State}}", container)
        state: dict[str, Any] = json.loads(inspected.stdout)
        return state

    def events(self, container: str) -> list[Event]:
        """The container's log events (its JSON lines), oldest first."""
        logs = self.engine("logs", container, timeout=60)
        found = []
        for line in (logs.stdout + logs.stderr).splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                found.append(event)
        return sorted(found, key=lambda event: str(event.get("timestamp", "")))

    def wait_for_event(
        self,
        container: str,
        predicate: Callable[[Event], bool],
        *,
        what: str,
        timeout: float = 60,
    ) -> Event:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events(container):
                if predicate(event):
                    return event
            if time.monotonic() > deadline:
                raise CheckFailed(
                    f"container {container[:12]} never logged {what} within {timeout:g} s:\n"
                    + tail(self.engine("logs", container, check=False).stderr)
                )
            time.sleep(POLL_INTERVAL * 4)

    def published(self, service: str, port: int) -> str:
        """The host address where the service's port is published, as host:port."""
        address = self.compose("port", service, str(port)).stdout.strip()
        if not address:
            raise CheckFailed(f"{service}'s port {port} is not published")
        return address

    def report(self) -> str:
        """The last lines every container said, for a failure's report."""
        logs = self.compose("logs", "--no-color", "--tail", "30", check=False, timeout=60)
        return logs.stdout + logs.stderr

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "5", check=False)
