"""``/metrics``: Prometheus metrics for whoever holds the metrics token.

The page tells how busy the service is and how many timers run; it is served only to a scraper
that sends ``Authorization: Bearer <METRICS_TOKEN>``. A token rather than a separate port: one
port works the same under several uvicorn workers, in every container and behind any proxy,
and Prometheus sends a bearer token natively. Without a token set, no metrics are served.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from timesheets.metrics import RunningTimesheets
from worker import metrics as worker_metrics

# Counted from the database at most once per RunningTimesheets.max_age, whichever process
# answers: a count in the database is not a per-process gauge to be summed.
_database_metrics = CollectorRegistry()
running_timesheets = RunningTimesheets()
_database_metrics.register(running_timesheets)

# A label takes one of these values or "other": a client choosing the method must not be able
# to add a series to every later scrape.
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
OTHER = "other"


def method_label(method: str | None) -> str:
    return method if method in KNOWN_METHODS else OTHER


def status_label(status: int) -> str:
    return str(status) if 100 <= status <= 599 else OTHER


def _refusal(request: HttpRequest) -> JsonResponse | None:
    token: str = settings.METRICS_TOKEN
    if not token:
        return JsonResponse(
            {"detail": "Metrics are not served: set METRICS_TOKEN to serve them to a scraper."},
            status=404,
        )
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(), token.encode()):
        refused = JsonResponse(
            {"detail": "Metrics need 'Authorization: Bearer <METRICS_TOKEN>'."}, status=401
        )
        refused["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return refused
    return None


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics; in multiprocess mode, those of every process of this service."""
    refused = _refusal(request)
    if refused is not None:
        return refused
    body = generate_latest(worker_metrics.registry()) + generate_latest(_database_metrics)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
