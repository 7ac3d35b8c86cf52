"""The NinjaAPI's JSON encoding, body parsing and error answers."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.core.asgi import get_asgi_application
from django.http import Http404
from django.test import AsyncClient, RequestFactory

from config.api import JsonEncoder, JsonParser, MalformedBody, api
from tests.asgi import http_scope
from timesheets.models import Project, Timesheet

JSON = "application/json"


class TestJsonEncoder:
    @pytest.mark.parametrize(
        ("moment", "text"),
        [
            (datetime(2026, 1, 5, 9, 0, 0, 123456, tzinfo=UTC), "2026-01-05T09:00:00.123456Z"),
            (datetime(2026, 1, 5, 9, 0, 0, 1, tzinfo=UTC), "2026-01-05T09:00:00.000001Z"),
            (datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC), "2026-01-05T09:00:00.000000Z"),
            (
                datetime(
                    2026, 1, 5, 11, 30, 0, 500, tzinfo=timezone(timedelta(hours=2, minutes=30))
                ),
                "2026-01-05T09:00:00.000500Z",
            ),
            (
                datetime(2025, 12, 31, 23, 0, 0, 999999, tzinfo=timezone(timedelta(hours=-10))),
                "2026-01-01T09:00:00.999999Z",
            ),
        ],
    )
    def test_times_are_utc_with_microseconds_and_z(self, moment: datetime, text: str) -> None:
        encoded = json.dumps({"at": moment}, cls=JsonEncoder)

        assert json.loads(encoded) == {"at": text}
        assert datetime.fromisoformat(text) == moment

    def test_other_values_are_encoded_as_before(self) -> None:
        value = uuid.UUID(int=1)

        assert json.loads(json.dumps([Decimal("1.5"), value], cls=JsonEncoder)) == [
            "1.5",
            str(value),
        ]


class TestJsonParser:
    def parse(self, body: bytes) -> Any:
        request = RequestFactory().post("/api/x", body, content_type=JSON)
        return JsonParser().parse_body(request)

    def test_an_object(self) -> None:
        assert self.parse(b'{"a": [1, "\\u00e9"]}') == {"a": [1, "é"]}

    @pytest.mark.parametrize("body", [b"[1]", b'"x"', b"null", b"3"])
    def test_other_json_is_left_to_validation(self, body: bytes) -> None:
        assert self.parse(body) == json.loads(body)

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (b"{", "not valid JSON"),
            (b"\xff", "not valid JSON"),
            (b'{"a": "\xc3"}', "not valid JSON"),
            (b"[" * 60_000, "nested too deeply"),
            (b"9" * 5000, "not valid JSON"),
        ],
    )
    def test_bad_bodies_raise_a_readable_error(self, body: bytes, message: str) -> None:
        with pytest.raises(MalformedBody, match=message):
            self.parse(body)


class TestErrorHandlers:
    def test_http404_from_a_view_is_answered_in_json(self) -> None:
        request = RequestFactory().get("/api/x")

        response = api.on_exception(request, Http404("secret detail"))

        assert response.status_code == 404
        assert json.loads(response.content) == {"detail": "Not found."}


@pytest.mark.django_db
async def test_validation_summary_names_fields_as_clients_know_them(alice_token: str) -> None:
    # ninja reports body fields under the view's parameter name, which clients never see.
    response = await AsyncClient().post(
        "/api/timesheets",
        {"project": "x"},
        JSON,
        headers={"Authorization": f"Bearer {alice_token}"},
    )

    assert response.status_code == 422
    assert response.json()["detail"].startswith("Invalid request: body.project: ")
    assert response.json()["errors"][0]["loc"] == ["body", "payload", "project"]


@pytest.fixture
def alice_token(alice: User, token_for: Callable[[User], str]) -> str:
    return token_for(alice)


# --- A body over the limit that declares no length ------------------------------------------
#
# A chunked upload has no Content-Length for the middleware to check up front; Django's
# ASGI handler spools it, and reading it raises RequestDataTooBig inside the API. This goes
# through the real ASGI application, whose requests run on their own database connections,
# hence a transactional test.


async def asgi_post(path: str, chunks: list[bytes], headers: dict[str, str]) -> dict[str, Any]:
    application = await sync_to_async(get_asgi_application)()
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    answer: dict[str, Any] = {"body": b""}
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Mapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        else:
            answer["body"] += message.get("body", b"")
            if not message.get("more_body", False):
                done.set()

    scope = http_scope(
        "POST",
        path,
        [(b"host", b"localhost")]
        + [(name.lower().encode(), value.encode()) for name, value in headers.items()],
    )
    await application(scope, receive, send)
    return answer


@pytest.mark.django_db(transaction=True)
class TestUndeclaredBodySize:
    async def test_a_chunked_body_over_64_kib_is_413_in_json(
        self, alice_token: str, project: Project
    ) -> None:
        chunk = b" " * (16 * 1024)
        body = b'{"project": %d}' % project.pk
        headers = {"Authorization": f"Bearer {alice_token}", "Content-Type": JSON}

        answer = await asgi_post("/api/timesheets", [body, *[chunk] * 4], headers)

        assert answer["status"] == 413
        assert answer["headers"]["content-type"].startswith(JSON)
        assert json.loads(answer["body"]) == {"detail": "The request body is larger than 64 KiB."}
        assert "x-request-id" in answer["headers"]
        assert not await Timesheet.objects.aexists()

    async def test_the_same_path_accepts_a_body_under_the_limit(
        self, alice_token: str, project: Project
    ) -> None:
        body = b'{"project": %d}' % project.pk
        headers = {"Authorization": f"Bearer {alice_token}", "Content-Type": JSON}

        answer = await asgi_post("/api/timesheets", [body, b" " * (60 * 1024)], headers)

        assert answer["status"] == 201, answer["body"]
        assert await Timesheet.objects.acount() == 1
