"""API authentication: bearer tokens for programs, the session for a logged-in browser."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest
from django.utils import timezone
from ninja.errors import AuthenticationError
from ninja.security import APIKeyCookie, HttpBearer

from timesheets.models import ApiToken
from timesheets.services import api_token_amark_used, api_token_digest

MAX_TOKEN_LENGTH = 256  # characters; longer is never a token of ours


class TokenExpired(AuthenticationError):
    pass


class BearerToken(HttpBearer):
    """``Authorization: Bearer <token>``, looked up by its digest with the async ORM."""

    is_async = True

    async def authenticate(self, request: HttpRequest, token: str) -> AbstractBaseUser | None:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        try:
            api_token = await ApiToken.objects.select_related("user").aget(
                digest=api_token_digest(token)
            )
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
        await api_token_amark_used(token=api_token, now=now)
        request.user = api_token.user
        return api_token.user


class Session(APIKeyCookie):
    """Django's session cookie, with CSRF protection on unsafe methods."""

    param_name = settings.SESSION_COOKIE_NAME
    is_async = True

    def _get_key(self, request: HttpRequest) -> str | None:
        # Without a session there is nothing to protect: answer 401, not a CSRF failure.
        if self.param_name not in request.COOKIES:
            return None
        return super()._get_key(request)

    async def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        if key is None:
            return None
        user: AbstractBaseUser | AnonymousUser = await request.auser()
        return user if user.is_authenticated else None
