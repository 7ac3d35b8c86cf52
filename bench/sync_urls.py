"""The URLs of the sync comparison: the API's paths, served by ``bench.sync_views``."""

from django.urls import path

from bench import sync_views
from config.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("api/timesheets/<int:timesheet_id>", sync_views.get_timesheet),
    path("api/timesheets/<int:timesheet_id>/start", sync_views.start_timesheet),
    path("api/timesheets/<int:timesheet_id>/stop", sync_views.stop_timesheet),
    path("api/events", sync_views.follow_events),
]
