"""The HTTP API: one NinjaAPI, its authentication, and how every error is answered.

Every error is JSON of the form ``{"detail": "<what went wrong and what to do>"}``; validation
errors add ``errors``, the field-by-field list.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import structlog
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError, ProgrammingError
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.renderers import JSONRenderer
from ninja.responses import NinjaJSONEncoder
from psycopg_pool import PoolTimeout

from config.database import unreachable_reason
from config.database_problems import is_unmigrated
from events.api import router as events_router
from reports.api import router as reports_router
from timesheets.api import router as timesheets_router
from timesheets.auth import BearerToken, Session
from timesheets.exceptions import (
    CorrectionRefused,
    ProjectCodeTaken,
    ProjectInactive,
    SegmentOverlap,
)
from timesheets.schemas import api_instant
from webhooks.api import router as webhooks_router
from worker.api import router as worker_router

logger = structlog.get_logger("http")


class JsonEncoder(NinjaJSONEncoder):
    def default(self, o: Any) -> Any:
        # Django's encoder cuts times to milliseconds; the API promises microseconds.
        if isinstance(o, datetime) and o.tzinfo is not None:
            return api_instant(o)
        return super().default(o)


class JsonRenderer(JSONRenderer):
    encoder_class = JsonEncoder


class MalformedBody(ValueError):
    pass


class JsonParser(Parser):
    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(request.body)
        except RecursionError:
            raise MalformedBody("The JSON body is nested too deeply.") from None
        except ValueError as error:  # also invalid UTF-8 and over-long numbers
            raise MalformedBody(f"The body is not valid JSON: {error}.") from None
        return data


api = NinjaAPI(
    title="Timesheets API",
    version="1",
    description=(
        "Start and stop timers; their time is accrued by a periodic job. "
        "Authenticate with `Authorization: Bearer <token>` "
        "(create one with `manage.py create_api_token <username>`) or a logged-in session."
    ),
    auth=[BearerToken(), Session()],
    parser=JsonParser(),
    renderer=JsonRenderer(),
    urls_namespace="api",
    # The schema and the docs are read-only pages: other methods get 405, like everywhere else.
    docs_decorator=require_safe,
)
api.add_router("", timesheets_router)
api.add_router("", worker_router)
api.add_router("", events_router)
api.add_router("", reports_router)
api.add_router("", webhooks_router)


def _error(request: HttpRequest, status: int, detail: str, **extra: Any) -> HttpResponse:
    return api.create_response(request, {"detail": detail, **extra}, status=status)


def _location(loc: list[Any]) -> str:
    # ninja prefixes body fields with the parameter name ("payload"), which callers never see.
    parts = [str(part) for part in loc if part not in ("payload",)]
    return ".".join(parts)


@api.exception_handler(ValidationError)
def validation_failed(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    summary = "; ".join(f"{_location(e.get('loc', []))}: {e.get('msg', '')}" for e in exc.errors)
    errors = [
        {"loc": e.get("loc", []), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors
    ]
    return _error(request, 422, f"Invalid request: {summary}.", errors=errors)


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc.__cause__, MalformedBody):
        return _error(
            request,
            422,
            str(exc.__cause__),
            errors=[{"loc": ["body"], "msg": str(exc.__cause__), "type": "json_invalid"}],
        )
    return _error(request, exc.status_code, str(exc))


@api.exception_handler(AuthenticationError)
def unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    detail = str(exc)
    if detail == "Unauthorized":
        detail = (
            "Authentication required: send 'Authorization: Bearer <token>' with a valid token, "
            "or log in."
        )
    response = _error(request, 401, detail)
    response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


@api.exception_handler(RequestDataTooBig)
def body_too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return _error(request, 413, "The request body is larger than 64 KiB.")


@api.exception_handler(Http404)
def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(request, 404, "Not found.")


@api.exception_handler(ProgrammingError)
def database_unmigrated(request: HttpRequest, exc: ProgrammingError) -> HttpResponse:
    # PostgreSQL names a missing table a programming error; any other one is a bug: a 500.
    if not is_unmigrated(exc):
        raise exc
    return database_unavailable(request, exc)


@api.exception_handler(OperationalError)
@api.exception_handler(InterfaceError)
def database_unavailable(request: HttpRequest, exc: DatabaseError) -> HttpResponse:
    # Nothing was written: the request can be repeated as it is once the database is back.
    if is_unmigrated(exc):
        logger.error("database_unmigrated", path=request.path, error=str(exc).strip())
        response = _error(
            request, 503, "The database is not migrated: run `python manage.py migrate`."
        )
        response["Retry-After"] = "5"
        return response
    reason = unreachable_reason()
    busy = reason is None and isinstance(exc.__cause__, PoolTimeout)
    logger.warning(
        "database_busy" if busy else "database_unavailable",
        path=request.path,
        error=str(exc).strip(),
        reason=reason,
    )
    detail = (
        # Every connection stayed in use for the whole wait: more requests than this process
        # can serve are in flight.
        "The service is busy right now; try again in a few seconds."
        if busy
        else "The database is unavailable right now; try again in a few seconds."
    )
    response = _error(request, 503, detail)
    response["Retry-After"] = "5"
    return response


@api.exception_handler(ProjectInactive)
@api.exception_handler(ProjectCodeTaken)
def conflict(request: HttpRequest, exc: ProjectInactive | ProjectCodeTaken) -> HttpResponse:
    return _error(request, 409, exc.message)


@api.exception_handler(CorrectionRefused)
def correction_refused(request: HttpRequest, exc: CorrectionRefused) -> HttpResponse:
    # The change would break the time model; an overlap also names the other run by its ids.
    if isinstance(exc, SegmentOverlap):
        conflict = {"timesheet_id": exc.timesheet_id, "segment_id": exc.segment_id}
        return _error(request, 422, exc.message, conflict=conflict)
    return _error(request, 422, exc.message)
