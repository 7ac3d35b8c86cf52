"""The webhooks HTTP API: people manage their own subscriptions; staff with the permissions,
everyone's. Every error is JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission, User
from django.test import AsyncClient

from webhooks.models import Subscription
from webhooks.services import subscription_create

pytestmark = pytest.mark.django_db

JSON = "application/json"
URL = "http://127.0.0.1:9/hook"  # never contacted by these tests


def grant(user: User, *codenames: str) -> User:
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return User.objects.get(pk=user.pk)


async def post(client: AsyncClient, body: Any) -> Any:
    return await client.post(
        "/api/webhooks", data=body if isinstance(body, str) else json.dumps(body), content_type=JSON
    )


async def test_create_answers_the_secret_once(alice_client: AsyncClient, alice: User) -> None:
    response = await post(alice_client, {"url": URL, "event_types": ["timesheet.started"]})
    assert response.status_code == 201, response.content
    created = response.json()
    stored = await Subscription.objects.aget(pk=created["id"])
    assert created["secret"] == stored.secret
    assert created["secret"].startswith("whsec_")
    assert created["owner"] == "alice"
    assert created["url"] == URL
    assert created["event_types"] == ["timesheet.started"]
    assert created["is_active"] is True
    assert stored.owner_id == alice.pk

    listed = (await alice_client.get("/api/webhooks")).json()
    assert [item["id"] for item in listed] == [created["id"]]
    assert "secret" not in listed[0]


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"url": "http://localhost/hook"}, 422, "not a public address"),
        ({"url": "http://10.0.0.5/hook"}, 422, "not a public address"),
        ({"url": "http://169.254.169.254/"}, 422, "not a public address"),
        ({"url": "http://[::1]:8000/hook"}, 422, "not a public address"),
        ({"url": "ftp://example.com/"}, 422, "must start with http:// or https://"),
        ({"url": URL, "event_types": ["nope"]}, 422, "event_types.0: Input should be"),
        ({"url": URL, "secret": "mine"}, 422, "secret"),
        ({"url": URL, "all_owners": "yes"}, 422, "all_owners"),
        ({"url": "x" * 2001}, 422, "url"),
        ({}, 422, "url"),
        ("{not json", 422, "not valid JSON"),
        ({"url": URL, "all_owners": True}, 403, "Only people who may view every timesheet"),
    ],
)
async def test_refusals_are_json_and_change_nothing(
    settings: Any, alice_client: AsyncClient, body: Any, status: int, detail: str
) -> None:
    if "127.0.0.1" not in json.dumps(body):
        settings.WEBHOOKS_ALLOWED_NETWORKS = []
    response = await post(alice_client, body)
    assert response.status_code == status
    assert response["content-type"].startswith(JSON)
    assert detail in response.json()["detail"]
    assert await Subscription.objects.acount() == 0


async def test_without_credentials_the_api_answers_401_in_json() -> None:
    response = await AsyncClient().get("/api/webhooks")
    assert response.status_code == 401
    assert "detail" in response.json()


@pytest.fixture
def two_subscriptions(alice: User, bob: User) -> tuple[Subscription, Subscription]:
    return subscription_create(owner=alice, url=URL), subscription_create(owner=bob, url=URL)


async def test_people_see_and_delete_only_their_own(
    alice_client: AsyncClient, two_subscriptions: tuple[Subscription, Subscription]
) -> None:
    alices, bobs = two_subscriptions
    listed = (await alice_client.get("/api/webhooks")).json()
    assert [item["id"] for item in listed] == [alices.pk]

    response = await alice_client.delete(f"/api/webhooks/{bobs.pk}")
    assert response.status_code == 404
    assert response.json() == {"detail": f"No webhook subscription with id {bobs.pk}."}
    assert await Subscription.objects.filter(pk=bobs.pk).aexists()

    assert (await alice_client.delete(f"/api/webhooks/{alices.pk}")).status_code == 204
    assert not await Subscription.objects.filter(pk=alices.pk).aexists()
    assert (await alice_client.delete(f"/api/webhooks/{alices.pk}")).status_code == 404
    assert (await alice_client.delete(f"/api/webhooks/{2**64}")).status_code == 404


async def test_staff_with_the_permissions_see_and_delete_everyone_s(
    client_for: Callable[[User], AsyncClient],
    staff: User,
    two_subscriptions: tuple[Subscription, Subscription],
) -> None:
    _, bobs = two_subscriptions
    # Being staff is not enough.
    plain = await sync_to_async(client_for)(staff)
    assert (await plain.get("/api/webhooks")).json() == []
    assert (await plain.delete(f"/api/webhooks/{bobs.pk}")).status_code == 404

    viewer = await sync_to_async(grant)(staff, "view_subscription")
    viewing = await sync_to_async(client_for)(viewer)
    listed = (await viewing.get("/api/webhooks")).json()
    assert [item["owner"] for item in listed] == ["alice", "bob"]
    assert (await viewing.delete(f"/api/webhooks/{bobs.pk}")).status_code == 404

    deleter = await sync_to_async(grant)(staff, "delete_subscription")
    deleting = await sync_to_async(client_for)(deleter)
    assert (await deleting.delete(f"/api/webhooks/{bobs.pk}")).status_code == 204
    assert not await Subscription.objects.filter(pk=bobs.pk).aexists()


async def test_people_who_view_every_timesheet_may_ask_for_everyone_s_events(
    client_for: Callable[[User], AsyncClient], bob: User
) -> None:
    viewer = await sync_to_async(grant)(bob, "view_timesheet")
    client = await sync_to_async(client_for)(viewer)
    response = await post(client, {"url": URL, "all_owners": True})
    assert response.status_code == 201
    assert response.json()["all_owners"] is True
