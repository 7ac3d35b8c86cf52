"""The API's and the probes' own ASGI handler: few thread hops, the same answers.

Requests go to ``config.asgi.application``, as uvicorn sends them, and every
``sync_to_async`` call they make is counted: each is a hop to a thread and back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from asgiref.sync import SyncToAsync, sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.core import signals
from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections
from django.test import Client

from config.api_handler import ApiHandler, HandlerChanged, check_handler, serves
from config.asgi import application
from tests.asgi import http_scope
from timesheets.models import Project, Timesheet
from timesheets.services import timesheet_create

MAX_HOPS = 3  # request_started, the view with its authentication, closing the response
JSON = "application/json"


class Answer:
    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = {name.decode().lower(): value.decode() for name, value in headers}
        self.cookies = [value.decode() for name, value in headers if name.lower() == b"set-cookie"]
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


async def call(
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    hops: list[str] | None = None,
) -> Answer:
    """One request to the project's ASGI application; each thread hop is appended to ``hops``."""
    scope = http_scope(
        method,
        path,
        [
            (name.lower().encode(), value.encode())
            for name, value in {
                "host": "testserver",
                "content-length": str(len(body)),
                **({"content-type": JSON} if body else {}),
                **(headers or {}),
            }.items()
        ],
    )
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        # Only the disconnect listener gets here; it is cancelled once the response is sent.
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(dict(message))

    original = SyncToAsync.__call__

    async def counted(self: SyncToAsync[Any, Any], *args: Any, **kwargs: Any) -> Any:
        if hops is not None:
            hops.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await original(self, *args, **kwargs)

    SyncToAsync.__call__ = counted  # type: ignore[method-assign]
    try:
        await application(scope, receive, send)
    finally:
        SyncToAsync.__call__ = original  # type: ignore[method-assign]
    start = next(m for m in sent if m["type"] == "http.response.start")
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(start["status"], start["headers"], body_out)


@pytest.fixture
def connection_kept() -> Iterator[None]:
    """The requests' database work runs on the test's thread and in its transaction, which
    ``close_old_connections`` would close; Django's test client disconnects it the same way.
    The signals' hops are still made: their other receivers still run in a thread."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def new_timesheet(owner: User, project: Project) -> Timesheet:
    return timesheet_create(owner=owner, project=project, description="", start=False)


@pytest.mark.django_db
@pytest.mark.usefixtures("connection_kept", "settings_limits")
class TestHops:
    async def test_a_token_holders_start_get_and_stop(
        self, alice: User, project: Project, token_for: Callable[[User], str]
    ) -> None:
        token = await sync_to_async(token_for)(alice)
        timesheet = await sync_to_async(new_timesheet)(alice, project)
        auth = {"authorization": f"Bearer {token}"}
        base = f"/api/timesheets/{timesheet.pk}"

        for method, path, status in [
            ("GET", base, "stopped"),  # the token's first use also writes when it was used
            ("POST", f"{base}/start", "running"),
            ("GET", base, "running"),
            ("POST", f"{base}/stop", "stopped"),
            ("GET", base, "stopped"),
        ]:
            hops: list[str] = []
            answer = await call(method, path, headers=auth, hops=hops)

            assert answer.status == 200, answer.body
            assert answer.json()["status"] == status
            assert 1 <= len(hops) <= MAX_HOPS, (method, path, hops)

    async def test_a_logged_in_browser_reads_and_writes(
        self, alice: User, project: Project
    ) -> None:
        client = Client()
        await sync_to_async(client.force_login)(alice)
        timesheet = await sync_to_async(new_timesheet)(alice, project)
        session = client.cookies[settings.SESSION_COOKIE_NAME].value
        csrf = "a" * 32
        cookies = f"{settings.SESSION_COOKIE_NAME}={session}; {settings.CSRF_COOKIE_NAME}={csrf}"
        base = f"/api/timesheets/{timesheet.pk}"

        hops: list[str] = []
        read = await call("GET", base, headers={"cookie": cookies}, hops=hops)
        assert read.status == 200, read.body
        assert len(hops) <= MAX_HOPS, hops

        refused = await call("POST", f"{base}/start", headers={"cookie": cookies})
        assert refused.status == 403, refused.body
        assert "CSRF" in refused.json()["detail"]

        hops = []
        started = await call(
            "POST", f"{base}/start", headers={"cookie": cookies, "x-csrftoken": csrf}, hops=hops
        )
        assert started.status == 200, started.body
        assert started.json()["status"] == "running"
        assert len(hops) <= MAX_HOPS, hops

    async def test_a_forged_session_is_refused(self) -> None:
        answer = await call(
            "GET", "/api/timesheets", headers={"cookie": f"{settings.SESSION_COOKIE_NAME}=forged"}
        )

        assert answer.status == 401
        assert answer.headers["www-authenticate"] == 'Bearer realm="api"'

    @pytest.mark.parametrize("path", ["/healthz", "/readyz"])
    async def test_the_probes(self, path: str) -> None:
        hops: list[str] = []
        answer = await call("GET", path, hops=hops)

        assert answer.status == 200, answer.body
        assert len(hops) <= MAX_HOPS, hops


class TestSameAnswers:
    """What Django's full stack adds to a response, the API's stack adds too."""

    async def test_headers(self) -> None:
        answer = await call("GET", "/healthz", headers={"x-request-id": "probe-1"})

        assert answer.headers["x-request-id"] == "probe-1"
        assert re.fullmatch(r"app;dur=\d+(\.\d+)?", answer.headers["server-timing"])
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == settings.SECURE_REFERRER_POLICY
        assert answer.headers["content-length"] == str(len(answer.body))

    async def test_one_log_event_per_request(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO)

        await call("GET", "/healthz")

        events = [
            r.msg
            for r in caplog.records
            if isinstance(r.msg, dict) and r.msg.get("event") == "http_request"
        ]
        assert [(e["path"], e["status"]) for e in events] == [("/healthz", 200)]

    async def test_unknown_paths_and_wrong_methods_answer_json(self) -> None:
        missing = await call("GET", "/api/no-such-endpoint")
        wrong = await call("DELETE", "/healthz")

        assert (missing.status, wrong.status) == (404, 405)
        assert missing.json()["detail"] == "There is no API endpoint at /api/no-such-endpoint."
        assert wrong.json()["detail"].startswith("Method DELETE is not allowed here")
        assert "GET" in wrong.headers["allow"]

    async def test_an_oversized_body_is_refused(self) -> None:
        answer = await call("POST", "/api/timesheets", body=b"x" * (64 * 1024 + 1))

        assert answer.status == 413

    @pytest.mark.django_db
    async def test_the_docs_set_the_csrf_cookie(self) -> None:
        answer = await call("GET", "/api/docs")

        assert answer.status == 200
        assert any(c.startswith(f"{settings.CSRF_COOKIE_NAME}=") for c in answer.cookies)

    @pytest.mark.django_db
    async def test_pages_keep_djangos_full_stack(self) -> None:
        answer = await call("GET", "/admin/login/")

        # The login form needs the session and CSRF middleware, which only the full stack has.
        assert answer.status == 200
        assert any(c.startswith(f"{settings.CSRF_COOKIE_NAME}=") for c in answer.cookies)


class TestRouting:
    @pytest.mark.parametrize(
        ("path", "served"),
        [
            ("/api/timesheets", True),
            ("/api/", True),
            ("/healthz", True),
            ("/readyz", True),
            ("/metrics", True),
            ("/admin/", False),
            ("/apix", False),
            ("/healthz/", False),
        ],
    )
    def test_paths(self, path: str, served: bool) -> None:
        assert serves(path) is served


class TestMiddleware:
    def test_a_middleware_that_would_hop_is_refused(self, settings: Any) -> None:
        settings.API_MIDDLEWARE = [
            *settings.API_MIDDLEWARE,
            "django.contrib.sessions.middleware.SessionMiddleware",
        ]

        with pytest.raises(ImproperlyConfigured, match="SessionMiddleware"):
            ApiHandler()

    def test_a_sync_only_middleware_is_refused(self, settings: Any) -> None:
        settings.API_MIDDLEWARE = ["tests.config.test_api_handler.sync_only"]

        with pytest.raises(ImproperlyConfigured, match="not async-capable"):
            ApiHandler()

    def test_the_settings_stack_is_accepted(self) -> None:
        ApiHandler()


class TestDjangoInternals:
    def test_this_release_has_them(self) -> None:
        check_handler()

    def test_a_release_without_them_fails_saying_what_is_missing(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from django.core.handlers.base import BaseHandler

        monkeypatch.delattr(BaseHandler, "_get_response_async")

        with pytest.raises(HandlerChanged, match="_get_response_async"):
            check_handler()


def sync_only(get_response: Any) -> Any:
    return get_response


sync_only.async_capable = False  # type: ignore[attr-defined]
