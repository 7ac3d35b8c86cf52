"""The ASGI handler of the API and the probes: Django's, with a middleware stack that never
hops to a thread.

Under ASGI, Django runs each ``MiddlewareMixin`` hook (sessions, CSRF, messages, ...) through
``sync_to_async``: a thread hop each, a dozen per request, most of them for features a JSON API
does not use. ``ApiHandler`` builds its chain from ``settings.API_MIDDLEWARE`` instead, which
holds only async-capable middleware, and refuses any other. A request then hops to a thread
three times: for the ``request_started`` signal, for the view (django-ninja runs a synchronous
view and its authentication in one hop), and for closing the response (``request_finished``,
which hands the database connection back).

Those hops run on a thread lent to the request and kept for the next one
(``config/threads.py``) rather than on a thread started for each request.

``config.asgi`` routes ``/api/`` and the probes here, every other path to Django's full stack.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from inspect import iscoroutinefunction
from typing import Any, cast

import django
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.urls import set_urlconf
from django.utils.deprecation import MiddlewareMixin
from django.utils.log import log_response
from django.utils.module_loading import import_string

from config.middleware import API_PREFIX, JSON_PATHS
from config.threads import LendsThreads

# What ApiHandler takes from Django's BaseHandler beyond its documented interface.
DJANGO_INTERNALS = ("_get_response_async", "load_middleware", "handle", "send_response")


class HandlerChanged(RuntimeError):
    """Django's handler no longer has what the API's handler builds on."""


def check_handler() -> None:
    missing = [name for name in DJANGO_INTERNALS if not callable(getattr(ASGIHandler, name, None))]
    if missing:
        raise HandlerChanged(
            f"Django {django.get_version()}'s ASGIHandler has no {', '.join(missing)}, which "
            "config/api_handler.py builds on; install a release that pyproject.toml allows."
        )


check_handler()


def serves(path: str) -> bool:
    """Whether ``ApiHandler`` serves this path (the request's path without its root path)."""
    return path.startswith(API_PREFIX) or path in JSON_PATHS


class ApiHandler(LendsThreads, ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        """Django's ``load_middleware`` for ``settings.API_MIDDLEWARE``, async only."""
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        # Not in django-stubs: the view's own step of the chain, as Django's builder uses it.
        get_response = self._get_response_async  # type: ignore[attr-defined]
        handler = convert_exception_to_response(get_response)
        for path in reversed(settings.API_MIDDLEWARE):
            middleware = import_string(path)
            if not getattr(middleware, "async_capable", False):
                raise ImproperlyConfigured(
                    f"API_MIDDLEWARE holds {path}, which is not async-capable: Django would "
                    "hop to a thread for it on every request."
                )
            try:
                instance = middleware(handler)
            except MiddlewareNotUsed:
                continue
            if not iscoroutinefunction(instance):
                raise ImproperlyConfigured(f"{path} built a synchronous middleware.")
            hooks = ["process_view", "process_template_response"]
            if isinstance(instance, MiddlewareMixin):
                hooks += ["process_request", "process_response"]
            for hook in hooks:
                if hasattr(instance, hook):
                    raise ImproperlyConfigured(
                        f"API_MIDDLEWARE holds {path}, whose {hook}() Django would call in a "
                        "thread on every request."
                    )
            if hasattr(instance, "process_exception"):
                # Called only for an exception, in a thread, as Django does.
                self._exception_middleware.append(instance.process_exception)
            handler = convert_exception_to_response(instance)
        self._middleware_chain = handler

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        """Django's, with its log of 4xx and 5xx responses written here rather than in a
        thread: logging is what the request log middleware does inline on every request."""
        set_urlconf(settings.ROOT_URLCONF)
        chain = cast(Callable[[HttpRequest], Awaitable[HttpResponseBase]], self._middleware_chain)
        response = await chain(request)
        response._resource_closers.append(request.close)  # type: ignore[attr-defined]
        if response.status_code >= 400:
            log_response(
                "%s: %s",
                response.reason_phrase,
                request.path,
                # Any response, as Django passes it; the stubs say HttpResponse.
                response=cast(HttpResponse, response),
                request=request,
            )
        return response
