from django.contrib import admin
from django.urls import include, path

from config.api import api
from config.health import healthz, readyz
from config.metrics import metrics
from pages.views import api_home

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    # Exactly /api/ (GET): the docs; every other /api/ route is the API's.
    path("api/", api_home, name="api_home"),
    path("api/", api.urls),
    path("accounts/", include("pages.auth_urls")),
    path("reports/", include("reports.urls")),
    path("", include("pages.urls")),
]
