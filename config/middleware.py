"""Project middleware. Each works in both the sync and the async stack without a thread hop."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable
from inspect import iscoroutinefunction
from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware
from django.utils.decorators import async_only_middleware, sync_and_async_middleware
from django.utils.deprecation import MiddlewareMixin
from prometheus_client import Counter

from config.database_problems import explains, is_unmigrated
from config.metrics import method_label, status_label

logger = structlog.get_logger("http")

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by method (a standard one, or other) and status.",
    ["method", "status"],
)

API_PREFIX = "/api/"
# Outside the API, the probes and the metrics' errors answer JSON too.
JSON_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
REQUEST_ID_HEADER = "X-Request-ID"
# An upstream request id is kept only when it is safe to print in logs and headers.
_UPSTREAM_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

type GetResponse = Callable[[HttpRequest], Any]


def _request_id(request: HttpRequest) -> str:
    upstream = request.headers.get(REQUEST_ID_HEADER, "")
    if _UPSTREAM_REQUEST_ID.fullmatch(upstream):
        return upstream
    return uuid.uuid4().hex


def _log_request(
    request: HttpRequest, response: HttpResponseBase, request_id: str, started: float
) -> None:
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    status = response.status_code
    response[REQUEST_ID_HEADER] = request_id
    response["Server-Timing"] = f"app;dur={duration_ms}"
    HTTP_REQUESTS.labels(method=method_label(request.method), status=status_label(status)).inc()
    logger.log(
        40 if status >= 500 else 20,  # ERROR or INFO
        "http_request",
        method=request.method,
        path=request.path,
        status=status,
        duration_ms=duration_ms,
    )


@sync_and_async_middleware
def request_log_middleware(get_response: GetResponse) -> GetResponse:
    """Give every request an id in its log context; when it is answered, report the app's
    time in a Server-Timing header, count it, and log one event."""

    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            started = time.perf_counter()
            request_id = _request_id(request)
            with structlog.contextvars.bound_contextvars(request_id=request_id):
                response: HttpResponseBase = await get_response(request)
                _log_request(request, response, request_id, started)
            return response

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        request_id = _request_id(request)
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            response: HttpResponseBase = get_response(request)
            _log_request(request, response, request_id, started)
        return response

    return middleware


def _answers_in_json(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX) or request.path in JSON_PATHS


def _declared_body_too_large(request: HttpRequest) -> JsonResponse | None:
    """Refuse an API body that says it is over the limit before anyone reads it."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return JsonResponse({"detail": "The Content-Length header is not a number."}, status=400)
    if limit is not None and _answers_in_json(request) and declared > limit:
        return JsonResponse(
            {"detail": f"The request body is larger than {limit // 1024} KiB."}, status=413
        )
    return None


def _api_error_as_json(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    if (
        not _answers_in_json(request)
        or response.status_code not in (404, 405)
        or response.get("Content-Type", "").startswith("application/json")
    ):
        return response
    if response.status_code == 404:
        return JsonResponse({"detail": f"There is no API endpoint at {request.path}."}, status=404)
    allowed = response.get("Allow", "")
    converted = JsonResponse(
        {"detail": f"Method {request.method} is not allowed here; use {allowed}."}, status=405
    )
    converted["Allow"] = allowed
    return converted


@sync_and_async_middleware
def api_errors_middleware(get_response: GetResponse) -> GetResponse:
    """Refuse oversized API bodies, and answer unknown API paths and wrong methods in JSON,
    like every other API error; the health probes too."""

    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            refused = _declared_body_too_large(request)
            if refused is not None:
                return refused
            response: Awaitable[HttpResponseBase] = get_response(request)
            return _api_error_as_json(request, await response)

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        refused = _declared_body_too_large(request)
        if refused is not None:
            return refused
        return _api_error_as_json(request, get_response(request))

    return middleware


class DatabaseProblemsMiddleware(MiddlewareMixin):
    """A page or probe that meets a database it cannot use (down, or never migrated) answers
    503 saying so, not a 500 with a traceback. The API answers such errors itself."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DatabaseError) or not explains(exception):
            return None
        unmigrated = is_unmigrated(exception)
        logger.error(
            "database_unmigrated" if unmigrated else "database_unavailable",
            path=request.path,
            error=" ".join(str(exception).split()),
        )
        detail = (
            "The database is not migrated: run `python manage.py migrate`."
            if unmigrated
            else "The database is unavailable right now; try again in a few seconds."
        )
        response: HttpResponse = (
            JsonResponse({"detail": detail}, status=503)
            if _answers_in_json(request)
            else HttpResponse(detail, status=503, content_type="text/plain; charset=utf-8")
        )
        response["Retry-After"] = "5"
        return response


# Django's middlewares that only compute (headers, redirects, the CSRF cookie): under ASGI a
# MiddlewareMixin hops to a thread for each of its hooks, so the API's stack calls them inline.
# CsrfViewMiddleware is here for its cookie (set when a page asks for a token, the docs page
# does) and the secret it reads; django-ninja checks the token itself, for session auth only.
INLINE_MIDDLEWARE: tuple[type[MiddlewareMixin], ...] = (
    SecurityMiddleware,
    CommonMiddleware,
    CsrfViewMiddleware,
    XFrameOptionsMiddleware,
)


@async_only_middleware
def django_hooks_middleware(get_response: GetResponse) -> GetResponse:
    """Django's own ``INLINE_MIDDLEWARE``, in that order, without a thread hop: each one's
    ``process_request`` on the way in (a response stops the way in, as in Django's chain),
    each ``process_response`` of those reached on the way out."""
    if settings.CSRF_USE_SESSIONS:
        raise ImproperlyConfigured(
            "The API's middleware has no sessions, so CSRF_USE_SESSIONS cannot be used."
        )
    hooks = [middleware(get_response) for middleware in INLINE_MIDDLEWARE]

    async def middleware(request: HttpRequest) -> HttpResponseBase:
        reached = 0
        response: HttpResponseBase | None = None
        for hook in hooks:
            reached += 1
            process_request = getattr(hook, "process_request", None)
            if process_request is not None:
                response = process_request(request)
                if response is not None:
                    break
        if response is None:
            response = await get_response(request)
        for hook in reversed(hooks[:reached]):
            process_response = getattr(hook, "process_response", None)
            if process_response is not None:
                response = process_response(request, response)
        assert response is not None
        return response

    return middleware
