from django.urls import path

from reports.views import report_page

app_name = "reports"

urlpatterns = [path("", report_page, name="report")]
