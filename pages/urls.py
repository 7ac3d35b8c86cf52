from django.urls import path

from pages import dashboard, views

app_name = "pages"

urlpatterns = [
    path("", views.my_time, name="my_time"),
    path("timer/start", views.timer_start, name="timer_start"),
    path("entries/add", views.entry_add, name="entry_add"),
    path("entries/<int:pk>", views.entry, name="entry"),
    path("entries/<int:pk>/start", views.timer_restart, name="timer_restart"),
    path("entries/<int:pk>/stop", views.timer_stop, name="timer_stop"),
    path("entries/<int:pk>/describe", views.entry_describe, name="entry_describe"),
    path("entries/<int:pk>/delete", views.entry_delete, name="entry_delete"),
    path("entries/<int:pk>/review", views.entry_review, name="entry_review"),
    path("entries/<int:pk>/runs/add", views.segment_new, name="segment_new"),
    path("entries/<int:pk>/runs/<int:segment_pk>", views.segment_edit, name="segment_edit"),
    path(
        "entries/<int:pk>/runs/<int:segment_pk>/delete",
        views.segment_remove,
        name="segment_remove",
    ),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<int:pk>/revoke", views.token_revoke, name="token_revoke"),
    path("account/", views.account, name="account"),
    path("dashboard/", dashboard.dashboard, name="dashboard"),
]
