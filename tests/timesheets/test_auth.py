"""API authentication: bearer tokens and the browser session with its CSRF protection."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.test import AsyncClient
from django.utils import timezone

from timesheets.auth import MAX_TOKEN_LENGTH
from timesheets.models import ApiToken, Project, Timesheet
from timesheets.services import TOKEN_TOUCH_INTERVAL

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settings_limits")]

JSON = "application/json"


async def sync(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await sync_to_async(function)(*args, **kwargs)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def get(headers: dict[str, str], path: str = "/api/timesheets") -> Any:
    return await AsyncClient().get(path, headers=headers)


def assert_unauthorized(response: Any, *, mentions: str) -> None:
    assert response.status_code == 401, response.content
    assert response["Content-Type"].startswith(JSON)
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert mentions in json.loads(response.content)["detail"]


class TestBearerToken:
    async def test_a_valid_token_authenticates_its_user(
        self, alice: User, bob: User, project: Project, token_for: Callable[[User], str]
    ) -> None:
        token = await sync(token_for, alice)
        await Timesheet.objects.acreate(owner=alice, project=project, description="hers")
        await Timesheet.objects.acreate(owner=bob, project=project, description="his")

        response = await get(bearer(token))

        assert response.status_code == 200
        assert [item["description"] for item in response.json()["items"]] == ["hers"]

    async def test_only_a_sha256_digest_is_stored(
        self, alice: User, token_for: Callable[[User], str]
    ) -> None:
        token = await sync(token_for, alice)

        stored = await ApiToken.objects.aget(user=alice)
        assert stored.digest == hashlib.sha256(token.encode()).hexdigest()
        assert token.startswith(stored.prefix)
        assert len(stored.prefix) < len(token) // 2
        row = await ApiToken.objects.filter(pk=stored.pk).values().aget()
        assert not any(token in str(value) for value in row.values())

    async def test_a_user_may_have_several_tokens(
        self, alice: User, token_for: Callable[[User], str]
    ) -> None:
        first, second = await sync(token_for, alice), await sync(token_for, alice)
        assert first != second

        assert (await get(bearer(first))).status_code == 200
        assert (await get(bearer(second))).status_code == 200

        await ApiToken.objects.filter(prefix=first[:12]).adelete()
        assert_unauthorized(await get(bearer(first)), mentions="Bearer")
        assert (await get(bearer(second))).status_code == 200

    async def test_a_token_that_has_not_expired_yet_works(
        self, alice: User, token_for: Callable[..., str]
    ) -> None:
        token = await sync(token_for, alice, expires_at=timezone.now() + timedelta(minutes=1))

        assert (await get(bearer(token))).status_code == 200

    async def test_an_expired_token_says_so(
        self, alice: User, token_for: Callable[..., str]
    ) -> None:
        token = await sync(token_for, alice, expires_at=timezone.now() - timedelta(seconds=1))

        response = await get(bearer(token))

        assert_unauthorized(response, mentions="expired")

    async def test_an_inactive_users_token_is_refused(
        self, alice: User, token_for: Callable[[User], str]
    ) -> None:
        token = await sync(token_for, alice)
        await User.objects.filter(pk=alice.pk).aupdate(is_active=False)

        assert_unauthorized(await get(bearer(token)), mentions="Authentication required")

    @pytest.mark.parametrize(
        "headers",
        [
            pytest.param({}, id="no-header"),
            pytest.param({"Authorization": ""}, id="empty"),
            pytest.param({"Authorization": "Bearer"}, id="no-token"),
            pytest.param({"Authorization": "Bearer "}, id="blank-token"),
            pytest.param({"Authorization": "Bearer tsk_not-a-real-token"}, id="unknown"),
            pytest.param({"Authorization": "Basic YWxpY2U6c2VjcmV0"}, id="basic"),
            pytest.param({"Authorization": "Token tsk_x"}, id="other-scheme"),
            pytest.param({"Authorization": "Bearer " + "t" * (MAX_TOKEN_LENGTH + 1)}, id="long"),
            pytest.param({"Authorization": "Bearer " + "t" * 100_000}, id="huge"),
            pytest.param({"Authorization": "Bearer tsk_\x00\x7f\xff"}, id="odd-bytes"),
        ],
    )
    async def test_missing_or_invalid_tokens_get_401(
        self, alice: User, token_for: Callable[[User], str], headers: dict[str, str]
    ) -> None:
        await sync(token_for, alice)

        response = await get(headers)

        assert_unauthorized(response, mentions="Authorization: Bearer <token>")

    async def test_the_scheme_is_case_insensitive(
        self, alice: User, token_for: Callable[[User], str]
    ) -> None:
        token = await sync(token_for, alice)

        assert (await get({"Authorization": f"bearer {token}"})).status_code == 200

    async def test_last_use_is_written_at_most_once_a_minute(
        self, alice: User, token_for: Callable[[User], str]
    ) -> None:
        token = await sync(token_for, alice)
        tokens = ApiToken.objects.filter(user=alice)
        assert (await tokens.aget()).last_used_at is None

        before = timezone.now()
        await get(bearer(token))
        first = (await tokens.aget()).last_used_at
        assert first is not None
        assert first >= before

        recently = timezone.now() - TOKEN_TOUCH_INTERVAL + timedelta(seconds=5)
        await tokens.aupdate(last_used_at=recently)
        await get(bearer(token))
        assert (await tokens.aget()).last_used_at == recently

        long_ago = timezone.now() - TOKEN_TOUCH_INTERVAL - timedelta(seconds=1)
        await tokens.aupdate(last_used_at=long_ago)
        before = timezone.now()
        await get(bearer(token))
        touched = (await tokens.aget()).last_used_at
        assert touched is not None
        assert touched >= before

    async def test_bearer_requests_need_no_csrf_token(
        self, alice: User, project: Project, token_for: Callable[[User], str]
    ) -> None:
        token = await sync(token_for, alice)
        client = AsyncClient(enforce_csrf_checks=True)

        response = await client.post(
            "/api/timesheets", {"project": project.pk}, content_type=JSON, headers=bearer(token)
        )

        assert response.status_code == 201


class TestSession:
    async def test_a_logged_in_browser_reads(self, alice: User) -> None:
        client = AsyncClient()
        await client.aforce_login(alice)

        response = await client.get("/api/timesheets")

        assert response.status_code == 200
        assert response.json()["count"] == 0

    async def test_a_post_without_a_csrf_token_is_refused(
        self, alice: User, project: Project
    ) -> None:
        client = AsyncClient(enforce_csrf_checks=True)
        await client.aforce_login(alice)

        response = await client.post("/api/timesheets", {"project": project.pk}, JSON)

        assert response.status_code == 403
        assert response["Content-Type"].startswith(JSON)
        assert "CSRF" in response.json()["detail"]
        assert not await Timesheet.objects.aexists()

    async def test_a_post_with_a_wrong_csrf_token_is_refused(
        self, alice: User, project: Project
    ) -> None:
        client = AsyncClient(enforce_csrf_checks=True)
        await client.aforce_login(alice)
        await client.get("/api/docs")

        response = await client.post(
            "/api/timesheets",
            {"project": project.pk},
            JSON,
            headers={"X-CSRFToken": "x" * 32},
        )

        assert response.status_code == 403
        assert not await Timesheet.objects.aexists()

    async def test_a_post_with_the_csrf_token_succeeds(self, alice: User, project: Project) -> None:
        client = AsyncClient(enforce_csrf_checks=True)
        await client.aforce_login(alice)
        # The docs page carries the token for its "try it out" buttons, and sets the cookie.
        await client.get("/api/docs")
        csrf_token = client.cookies[settings.CSRF_COOKIE_NAME].value

        response = await client.post(
            "/api/timesheets",
            {"project": project.pk},
            JSON,
            headers={"X-CSRFToken": csrf_token},
        )

        assert response.status_code == 201, response.content
        timesheet = await Timesheet.objects.aget()
        assert timesheet.owner_id == alice.pk

    async def test_an_inactive_users_session_is_refused(self, alice: User) -> None:
        client = AsyncClient()
        await client.aforce_login(alice)
        await User.objects.filter(pk=alice.pk).aupdate(is_active=False)

        assert_unauthorized(await client.get("/api/timesheets"), mentions="Authentication")

    async def test_after_logout_the_session_is_refused(self, alice: User) -> None:
        client = AsyncClient()
        await client.aforce_login(alice)
        await client.alogout()

        assert_unauthorized(await client.get("/api/timesheets"), mentions="Authentication")

    async def test_a_forged_session_cookie_is_refused(self) -> None:
        client = AsyncClient()
        client.cookies[settings.SESSION_COOKIE_NAME] = "forged"

        assert_unauthorized(await client.get("/api/timesheets"), mentions="Authentication")
