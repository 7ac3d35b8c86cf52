"""API authentication: bearer tokens for programs, the session for a logged-in browser.

Both are synchronous on purpose: django-ninja then runs a synchronous view's authentication
and the view itself in one ``sync_to_async`` call, one thread hop for all the request's
database work (an async view pays one more hop for its authentication).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest
from django.utils import timezone
from ninja.errors import AuthenticationError
from ninja.security import APIKeyCookie, HttpBearer

from timesheets.models import ApiToken
from timesheets.services import api_token_digest, api_token_mark_used

MAX_TOKEN_LENGTH = 256  # characters; longer is never a token of ours


class TokenExpired(AuthenticationError):
    pass


class BearerToken(HttpBearer):
    """``Authorization: Bearer <token>``, looked up by its digest."""

    def authenticate(self, request: HttpRequest, token: str) -> AbstractBaseUser | None:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        try:
            api_token = ApiToken.objects.select_related("user").get(digest=api_token_digest(token))
        except ApiToken.DoesNotExist:
            return None
        now = timezone.now()
        if api_token.expires_at is not None and api_token.expires_at <= now:
            raise TokenExpired(
                message=f"This API token expired at {api_token.expires_at.isoformat()}; "
                "ask for a new one."
            )
        if not api_token.user.is_active:
            return None
        api_token_mark_used(token=api_token, now=now)
        request.user = api_token.user
        return api_token.user


class Session(APIKeyCookie):
    """Django's session cookie, with CSRF protection on unsafe methods."""

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request: HttpRequest) -> str | None:
        # Without a session there is nothing to protect: answer 401, not a CSRF failure.
        if self.param_name not in request.COOKIES:
            return None
        return super()._get_key(request)

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        if key is None:
            return None
        if not hasattr(request, "session"):
            # The API's own stack has no session middleware: a request without the cookie
            # (every program's) never pays for one, and this one loads it only to read it.
            engine = import_module(settings.SESSION_ENGINE)
            request.session = engine.SessionStore(key)
        user = get_user(request)
        if not user.is_authenticated:
            return None
        request.user = user
        return user
