"""The service's HTTP API, asked the way the README's curl commands ask it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from container_check.shell import CheckFailed

REQUEST_TIMEOUT = 10.0  # seconds


@dataclass(frozen=True)
class Api:
    address: str  # host:port
    token: str = ""

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, Any]:
        """Send one request; return the status and the JSON answer (None if not JSON)."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if body is not None:
            # What `curl -d` sends: the JSON body under curl's default form content type.
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(
            f"http://{self.address}{path}",
            data=None if body is None else body.encode(),
            headers=headers,
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:  # noqa: S310
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, None

    def expect(self, status: int, method: str, path: str, body: str | None = None) -> Any:
        answered, payload = self.request(method, path, body)
        if answered != status:
            raise CheckFailed(f"{method} {path} answered {answered}, not {status}: {payload}")
        return payload
