"""The project middleware: request ids and the request log, and JSON errors for the API.

Tests without a database mark prove that a request touches no database: pytest-django
refuses every connection they would open.
"""

from __future__ import annotations

import json
import logging
import re
from inspect import iscoroutinefunction
from typing import Any

import pytest
import structlog
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseServerError
from django.test import AsyncClient, AsyncRequestFactory, Client, RequestFactory

from config.middleware import api_errors_middleware, request_log_middleware

JSON = "application/json"
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
LIMIT = 64 * 1024  # bytes, DATA_UPLOAD_MAX_MEMORY_SIZE


def request_events(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The request log's events: structlog hands the event dict to logging as the message."""
    return [
        record.msg
        for record in caplog.records
        if isinstance(record.msg, dict) and record.msg.get("event") == "http_request"
    ]


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


class TestRequestId:
    async def test_a_fresh_id_for_each_request(self) -> None:
        client = AsyncClient()

        first = (await client.get("/healthz"))["X-Request-ID"]
        second = (await client.get("/healthz"))["X-Request-ID"]

        assert GENERATED_ID.fullmatch(first)
        assert GENERATED_ID.fullmatch(second)
        assert first != second

    @pytest.mark.parametrize("upstream", ["abc-123", "a.b:c_d-9", "F" * 128])
    async def test_a_safe_upstream_id_is_kept(self, upstream: str) -> None:
        response = await AsyncClient().get("/healthz", headers={"X-Request-ID": upstream})

        assert response["X-Request-ID"] == upstream

    @pytest.mark.parametrize(
        "upstream",
        [
            pytest.param("abc 123", id="space"),
            pytest.param("abc\n123", id="newline"),
            pytest.param("abc\r\nSet-Cookie: x=1", id="header-injection"),
            pytest.param("x" * 300, id="300-chars"),
            pytest.param("x" * 129, id="129-chars"),
            pytest.param("", id="empty"),
            pytest.param("caf\xe9", id="non-ascii"),
            pytest.param("a,b", id="comma"),
            pytest.param("<script>", id="markup"),
        ],
    )
    async def test_an_unsafe_upstream_id_is_replaced(self, upstream: str) -> None:
        response = await AsyncClient().get("/healthz", headers={"X-Request-ID": upstream})

        assert GENERATED_ID.fullmatch(response["X-Request-ID"])

    @pytest.mark.django_db
    @pytest.mark.parametrize(
        ("method", "path", "body", "status"),
        [
            ("GET", "/healthz", b"", 200),
            ("PUT", "/healthz", b"", 405),
            ("GET", "/api/timesheets", b"", 401),
            ("GET", "/api/nothing", b"", 404),
            ("DELETE", "/api/projects", b"", 405),
            ("POST", "/api/timesheets", b"x" * (LIMIT + 1), 413),
            ("GET", "/api/openapi.json", b"", 200),
            ("GET", "/nothing", b"", 404),
            ("GET", "/admin/login/", b"", 200),
            ("GET", "/admin/", b"", 302),
        ],
    )
    async def test_every_response_carries_one(
        self, method: str, path: str, body: bytes, status: int
    ) -> None:
        response = await AsyncClient().generic(method, path, body, content_type=JSON)

        assert response.status_code == status
        assert GENERATED_ID.fullmatch(response["X-Request-ID"])


class TestServerTiming:
    @pytest.mark.parametrize("path", ["/healthz", "/api/no-such-endpoint"])
    async def test_every_response_reports_the_apps_time(self, path: str) -> None:
        response = await AsyncClient().get(path)

        timing = re.fullmatch(r"app;dur=(\d+(\.\d+)?)", response["Server-Timing"])
        assert timing is not None, response["Server-Timing"]
        assert 0 <= float(timing.group(1)) < 10_000

    def test_the_sync_stack_reports_it_too(self) -> None:
        assert Client().get("/healthz")["Server-Timing"].startswith("app;dur=")

    def test_the_async_stack_adapts_no_middleware_to_a_thread(
        self, caplog: pytest.LogCaptureFixture, settings: Any
    ) -> None:
        from django.core.handlers.asgi import ASGIHandler

        settings.DEBUG = True  # Django reports adaptations only then
        caplog.set_level(logging.DEBUG, logger="django.request")
        ASGIHandler().load_middleware(is_async=True)

        adapted = [
            r.getMessage() for r in caplog.records if "adapted for middleware" in r.getMessage()
        ]
        assert adapted == [], "each adaptation would hop to a thread on every request"


class TestRequestLog:
    def test_the_sync_stack_logs_one_event(self, log: pytest.LogCaptureFixture) -> None:
        response = Client().get("/healthz", headers={"X-Request-ID": "sync-1"})

        assert response.status_code == 200
        assert response["X-Request-ID"] == "sync-1"
        [event] = request_events(log)
        assert_event(event, method="GET", path="/healthz", status=200, request_id="sync-1")

    async def test_the_async_stack_logs_one_event(self, log: pytest.LogCaptureFixture) -> None:
        response = await AsyncClient().get("/healthz", headers={"X-Request-ID": "async-1"})

        assert response.status_code == 200
        [event] = request_events(log)
        assert_event(event, method="GET", path="/healthz", status=200, request_id="async-1")

    @pytest.mark.django_db
    async def test_refused_requests_log_their_status(self, log: pytest.LogCaptureFixture) -> None:
        client = AsyncClient()

        unauthorized = await client.post("/api/timesheets", b"{}", content_type=JSON)
        not_allowed = await client.put("/api/projects")

        events = request_events(log)
        assert [(e["method"], e["path"], e["status"]) for e in events] == [
            ("POST", "/api/timesheets", 401),
            ("PUT", "/api/projects", 405),
        ]
        assert [e["request_id"] for e in events] == [
            unauthorized["X-Request-ID"],
            not_allowed["X-Request-ID"],
        ]
        assert all(
            record.levelno == logging.INFO for record in log.records if record.name == "http"
        )

    def test_sync_middleware_binds_the_id_for_the_views_logs(
        self, log: pytest.LogCaptureFixture
    ) -> None:
        def view(request: HttpRequest) -> HttpResponse:
            structlog.get_logger("tests").info("inside")
            return HttpResponse()

        middleware = request_log_middleware(view)
        assert not iscoroutinefunction(middleware)

        response = middleware(RequestFactory().get("/x", headers={"X-Request-ID": "r-1"}))

        assert response["X-Request-ID"] == "r-1"
        inside = [
            r.msg for r in log.records if isinstance(r.msg, dict) and r.msg["event"] == "inside"
        ]
        assert [event["request_id"] for event in inside] == ["r-1"]
        assert "request_id" not in structlog.contextvars.get_contextvars()

    async def test_async_middleware_binds_the_id_for_the_views_logs(
        self, log: pytest.LogCaptureFixture
    ) -> None:
        async def view(request: HttpRequest) -> HttpResponse:
            structlog.get_logger("tests").info("inside")
            return HttpResponse()

        middleware = request_log_middleware(view)
        assert iscoroutinefunction(middleware)

        response = await middleware(
            AsyncRequestFactory().get("/x", headers={"X-Request-ID": "r-2"})
        )

        assert response["X-Request-ID"] == "r-2"
        inside = [
            r.msg for r in log.records if isinstance(r.msg, dict) and r.msg["event"] == "inside"
        ]
        assert [event["request_id"] for event in inside] == ["r-2"]
        assert "request_id" not in structlog.contextvars.get_contextvars()

    @pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
    async def test_server_errors_are_logged_as_errors(
        self, log: pytest.LogCaptureFixture, asynchronous: bool
    ) -> None:
        def failing(request: HttpRequest) -> HttpResponseBase:
            return HttpResponseServerError()

        async def afailing(request: HttpRequest) -> HttpResponseBase:
            return HttpResponseServerError()

        if asynchronous:
            response = await request_log_middleware(afailing)(AsyncRequestFactory().get("/x"))
        else:
            response = request_log_middleware(failing)(RequestFactory().get("/x"))

        assert response.status_code == 500
        [record] = [r for r in log.records if r.name == "http"]
        assert record.levelno == logging.ERROR
        assert_event(record.msg, method="GET", path="/x", status=500, request_id=None)  # type: ignore[arg-type]


def assert_event(
    event: dict[str, Any], *, method: str, path: str, status: int, request_id: str | None
) -> None:
    assert event["event"] == "http_request"
    assert (event["method"], event["path"], event["status"]) == (method, path, status)
    assert isinstance(event["duration_ms"], float)
    assert 0 <= event["duration_ms"] < 60_000
    if request_id is None:
        assert GENERATED_ID.fullmatch(event["request_id"])
    else:
        assert event["request_id"] == request_id


class TestApiErrors:
    def view_that_must_not_run(self, request: HttpRequest) -> HttpResponse:
        raise AssertionError("the view ran")

    @pytest.mark.parametrize("path", ["/api/timesheets", "/healthz"])
    def test_a_declared_oversized_body_is_refused_before_the_view(self, path: str) -> None:
        middleware = api_errors_middleware(self.view_that_must_not_run)
        request = RequestFactory().post(path, b"x" * (LIMIT + 1), content_type=JSON)

        response = middleware(request)

        assert response.status_code == 413
        assert json.loads(response.content) == {"detail": "The request body is larger than 64 KiB."}

    async def test_the_async_path_refuses_it_too(self) -> None:
        async def view(request: HttpRequest) -> HttpResponse:
            raise AssertionError("the view ran")

        middleware = api_errors_middleware(view)
        assert iscoroutinefunction(middleware)
        request = AsyncRequestFactory().post("/api/timesheets", b"x" * (LIMIT + 1), JSON)

        response = await middleware(request)

        assert response.status_code == 413

    def test_a_body_of_exactly_64_kib_goes_through(self) -> None:
        seen: list[int] = []

        def view(request: HttpRequest) -> HttpResponse:
            seen.append(len(request.body))
            return HttpResponse(status=204)

        request = RequestFactory().post("/api/timesheets", b" " * LIMIT, content_type=JSON)

        assert api_errors_middleware(view)(request).status_code == 204
        assert seen == [LIMIT]

    def test_a_content_length_that_is_not_a_number_is_400(self) -> None:
        middleware = api_errors_middleware(self.view_that_must_not_run)
        request = RequestFactory().post("/api/timesheets", b"{}", content_type=JSON)
        request.META["CONTENT_LENGTH"] = "12, 12"

        response = middleware(request)

        assert response.status_code == 400
        assert "Content-Length" in json.loads(response.content)["detail"]

    async def test_unknown_api_paths_are_404_in_json(self) -> None:
        response = await AsyncClient().get("/api/no/such/thing")

        assert response.status_code == 404
        assert response.json() == {"detail": "There is no API endpoint at /api/no/such/thing."}

    async def test_pages_outside_the_api_keep_their_own_errors(self) -> None:
        response = await AsyncClient().get("/no/such/page")

        assert response.status_code == 404
        assert not response["Content-Type"].startswith(JSON)

    def test_the_sync_stack_answers_wrong_methods_in_json(self) -> None:
        response = Client().delete("/healthz")

        assert response.status_code == 405
        assert "GET" in response["Allow"]
        allowed = response["Allow"]
        assert response.json() == {"detail": f"Method DELETE is not allowed here; use {allowed}."}

    async def test_the_async_stack_answers_wrong_methods_in_json(self) -> None:
        response = await AsyncClient().delete("/healthz")

        assert response.status_code == 405
        assert "GET" in response["Allow"]
        allowed = response["Allow"]
        assert response.json() == {"detail": f"Method DELETE is not allowed here; use {allowed}."}


class TestHealthz:
    """No ``db`` fixture here: any query would fail these tests."""

    def test_sync(self) -> None:
        response = Client().get("/healthz")

        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    async def test_async(self) -> None:
        response = await AsyncClient().get("/healthz")

        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    async def test_even_with_a_session_cookie(self) -> None:
        client = AsyncClient()
        client.cookies["sessionid"] = "whatever"

        response = await client.get("/healthz")

        assert response.status_code == 200
