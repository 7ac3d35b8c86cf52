"""Django's sign-in, sign-out and password views, with the pages' templates.

The URL names are Django's own (``login``, ``password_reset_done``…): its views redirect to them.
"""

from django.contrib.auth import views as auth
from django.urls import path

urlpatterns = [
    path(
        "login/",
        auth.LoginView.as_view(
            template_name="pages/registration/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth.LogoutView.as_view(), name="logout"),
    path(
        "password/change/",
        auth.PasswordChangeView.as_view(template_name="pages/registration/password_change.html"),
        name="password_change",
    ),
    path(
        "password/change/done/",
        auth.PasswordChangeDoneView.as_view(
            template_name="pages/registration/password_change_done.html"
        ),
        name="password_change_done",
    ),
    path(
        "password/reset/",
        auth.PasswordResetView.as_view(template_name="pages/registration/password_reset.html"),
        name="password_reset",
    ),
    path(
        "password/reset/sent/",
        auth.PasswordResetDoneView.as_view(
            template_name="pages/registration/password_reset_sent.html"
        ),
        name="password_reset_done",
    ),
    path(
        "password/reset/<uidb64>/<token>/",
        auth.PasswordResetConfirmView.as_view(
            template_name="pages/registration/password_reset_confirm.html"
        ),
        name="password_reset_confirm",
    ),
    path(
        "password/reset/complete/",
        auth.PasswordResetCompleteView.as_view(
            template_name="pages/registration/password_reset_complete.html"
        ),
        name="password_reset_complete",
    ),
]
