"""The API fuzzed from its own OpenAPI document with schemathesis.

Every operation of ``/api/openapi.json`` gets schema-valid (positive) and schema-breaking
(negative) requests, each sent four ways: with alice's token, with a staff token, with no
credentials at all, and with whatever credentials schemathesis made up. No answer may be a 5xx,
and every answer must match what the document declares: status code, content type, headers,
body schema.

The requests go through Django's WSGI handler in this thread, so the test's transaction sees
them and nothing is left behind. ``FUZZ_EXAMPLES`` sets the examples per operation and mode;
docs/reliability.md records a long run.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pydantic
import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.urls import Resolver404, resolve
from django.utils import timezone
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from ninja import Schema
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from config.wsgi import application
from timesheets.models import Project
from timesheets.schemas import ProjectIn, TimesheetIn
from timesheets.services import timesheet_create, timesheet_start
from webhooks import network
from webhooks.services import subscription_create
from worker import process
from worker.registry import Job
from worker.runner import Runner

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settings_limits")]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))  # per operation and generation mode

OPERATIONS = [
    ("GET", "/api/timesheets"),
    ("POST", "/api/timesheets"),
    ("GET", "/api/timesheets/current"),
    ("GET", "/api/timesheets/{timesheet_id}"),
    ("POST", "/api/timesheets/{timesheet_id}/start"),
    ("POST", "/api/timesheets/{timesheet_id}/stop"),
    ("GET", "/api/projects"),
    ("POST", "/api/projects"),
    ("GET", "/api/worker"),
    ("POST", "/api/worker/start"),
    ("GET", "/api/me"),
    ("GET", "/api/timesheets/{timesheet_id}/segments"),
    ("POST", "/api/timesheets/{timesheet_id}/segments"),
    ("PATCH", "/api/segments/{segment_id}"),
    ("DELETE", "/api/segments/{segment_id}"),
    ("GET", "/api/reports"),
    ("GET", "/api/webhooks"),
    ("POST", "/api/webhooks"),
    ("DELETE", "/api/webhooks/{subscription_id}"),
]

# Schema-valid requests that name something that does not exist: the document cannot say
# which ids and names exist, so these are the only 422s a valid request may get.
MISSING_REFERENCES = ("No project with id ", "No user named ", "Invalid report: user: No user")
# Nor can it say which runs the time model accepts: these refusals are the others.
TIME_MODEL_REFUSALS = (
    "A run must end after it starts",
    "A run cannot lie in the future",
    "This run would overlap",
    "This run is still running",
    "A finished run cannot be reopened",
    "Give started_at, ended_at or both",
    # and which ranges of days a report covers: these the schema cannot state either.
    "Invalid report: to: The last day",
    "Invalid report: to: A report covers at most",
    "Invalid report: from: Give a day",
    "Invalid report: to: Give a day",
    "Invalid report: group_by:",
)
# Nor can it say which URLs lead to a public address.
UNREACHABLE_URLS = ("The URL ",)
UNSAFE = ("POST", "PATCH", "DELETE")


@dataclass(frozen=True)
class World:
    """What the fuzzed requests find in the database, so that some of them hit real rows."""

    timesheet_ids: list[int]
    subscription_ids: list[int]
    project_ids: list[int]
    usernames: list[str]
    credentials: dict[str, dict[str, str]]


@pytest.fixture
def world(
    alice: User, bob: User, staff: User, project: Project, token_for: Callable[[User], str]
) -> World:
    archived = Project.objects.create(code="old", designation="Old", is_active=False)
    now = timezone.now()

    def timesheet(owner: User, *, running: bool) -> int:
        created = timesheet_create(owner=owner, project=project, description="", now=now)
        if running:
            created = timesheet_start(timesheet_id=created.pk, now=now)
        return created.pk

    return World(
        timesheet_ids=[
            timesheet(alice, running=True),
            timesheet(alice, running=False),
            timesheet(bob, running=True),
        ],
        subscription_ids=[
            subscription_create(owner=owner, url="http://93.184.215.14/hook").pk
            for owner in (alice, bob)
        ],
        project_ids=[project.pk, archived.pk],
        usernames=["alice", "bob", "sam"],
        credentials={
            "alice": {"Authorization": f"Bearer {token_for(alice)}"},
            "staff": {"Authorization": f"Bearer {token_for(staff)}"},
        },
    )


@pytest.fixture
def api_schema(db: None) -> Iterator[Any]:
    # As Django's test client does: the request cycle must not close the connection that
    # holds the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/openapi.json", application)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def no_name_lookups(monkeypatch: Any) -> None:
    """Webhook URLs' made-up host names are not looked up: each resolves to a public address
    (addresses written as such are checked as they are)."""

    def resolve(host: str, port: int) -> list[Any]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            return [ipaddress.ip_address("93.184.215.14")]

    monkeypatch.setattr(network, "resolve", resolve)


@pytest.fixture
def idle_runner() -> None:
    """POST /api/worker/start starts a runner: one that leaves the database alone."""

    async def idle(now: datetime) -> int:
        return 0

    process.set_factory(lambda: Runner(jobs=[Job(name="idle", function=idle, interval=60.0)]))


# A stream answers 200 and never ends, so a fuzzed request could not be read to its end: its
# inputs (user, Last-Event-ID) and their refusals are tested in tests/events/test_stream.py.
STREAMS = {("GET", "/api/events")}


def test_every_operation_in_the_document_is_fuzzed(api_schema: Any) -> None:
    documented = {
        (result.ok().method.upper(), result.ok().path) for result in api_schema.get_all_operations()
    }

    assert documented == set(OPERATIONS) | STREAMS


@pytest.mark.usefixtures("idle_runner")
@pytest.mark.parametrize("mode", list(GenerationMode), ids=str)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzz(api_schema: Any, world: World, method: str, path: str, mode: GenerationMode) -> None:
    operation = api_schema[path][method]
    tried: list[int] = []  # requests sent, one entry per case

    @settings(
        max_examples=EXAMPLES,
        deadline=None,  # the first request of a test warms caches; speed is not the point
        database=None,  # nothing written to the working tree
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    def examples(case: Any, data: st.DataObject) -> None:
        if mode.is_negative:
            assume(not any(map(sent_as_nothing, (case.query or {}).values())))
        if mode.is_positive:
            aim_at_known_rows(case, data, world)
        made_up = credentials_of(case)
        tried.append(len(world.credentials) + 1 + bool(made_up))
        if made_up:
            response = case.call()
            case.validate_response(response, excluded_checks=[positive_data_acceptance])
            assert_refused_without_credentials(case, response, made_up=made_up)
        strip_credentials(case)
        response = case.call()
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
        assert_refused_without_credentials(case, response, made_up=set())
        # Credentials schemathesis broke on purpose are replaced by valid ones: if they were all
        # it broke, the request is valid, and being served is right.
        unchecked = [positive_data_acceptance]
        if only_credentials_broken(case):
            unchecked.append(negative_data_rejection)
        for headers in world.credentials.values():
            response = case.call(headers=headers)
            case.validate_response(response, headers=headers, excluded_checks=unchecked)
            if mode.is_positive:
                assert_accepted_or_explained(response)

    examples()
    assert len(tried) >= min(EXAMPLES, 5), "hypothesis generated examples"
    # The figures docs/reliability.md reports; pytest -s shows them.
    print(f"{method} {path} {mode}: {len(tried)} cases, {sum(tried)} requests")  # noqa: T201


def aim_at_known_rows(case: Any, data: st.DataObject, world: World) -> None:
    """Point some valid requests at rows that exist, so that they get past the 404s."""
    if case.path_parameters and "timesheet_id" in case.path_parameters:
        pick = data.draw(st.sampled_from([None, *world.timesheet_ids]))
        if pick is not None:
            case.path_parameters["timesheet_id"] = pick
    if case.path_parameters and "subscription_id" in case.path_parameters:
        pick = data.draw(st.sampled_from([None, *world.subscription_ids]))
        if pick is not None:
            case.path_parameters["subscription_id"] = pick
    if isinstance(case.body, dict) and "project" in case.body:
        choices = [*world.project_ids, case.body["project"]]
        case.body["project"] = data.draw(st.sampled_from(choices))
    if case.query:
        if "project" in case.query:
            project = data.draw(st.sampled_from([None, *world.project_ids]))
            case.query["project"] = project if project is not None else case.query["project"]
        if "user" in case.query:
            username = data.draw(st.sampled_from([None, *world.usernames]))
            case.query["user"] = username if username is not None else case.query["user"]


def sent_as_nothing(value: Any) -> bool:
    """A query value the client leaves out of the URL altogether: a negative case that relies
    on it breaks no rule once sent, and being served would be right."""
    return isinstance(value, list) and all(item is None for item in value)


def only_credentials_broken(case: Any) -> bool:
    """Whether the headers and cookies, where the credentials go, are all a negative case broke
    (the API reads no other header and no other cookie)."""
    if case.meta is None:
        return False
    broken = {where for where, info in case.meta.components.items() if info.mode.is_negative}
    return bool(broken) and broken <= {ParameterLocation.HEADER, ParameterLocation.COOKIE}


def credentials_of(case: Any) -> set[str]:
    """What schemathesis generated for the document's security schemes, if anything."""
    found = set()
    if any(name.lower() == "authorization" for name in case.headers or {}):
        found.add("authorization")
    if case.cookies:
        found.add("cookie")
    return found


def strip_credentials(case: Any) -> None:
    if case.headers:
        for name in [name for name in case.headers if name.lower() == "authorization"]:
            del case.headers[name]
    if case.cookies:
        case.cookies.clear()


def resolves(case: Any) -> bool:
    try:
        resolve(case.formatted_path)
    except Resolver404:
        return False
    return True


def assert_refused_without_credentials(case: Any, response: Any, *, made_up: set[str]) -> None:
    """Without valid credentials nothing is served: 401, or 404 for a path that is no route,
    or 403 when a session cookie comes without its CSRF token on an unsafe method."""
    status = response.status_code
    answer = json.loads(response.content)
    assert set(answer) == {"detail"}, answer
    if status == 404:
        assert not resolves(case), case.formatted_path
    elif status == 403:
        assert "cookie" in made_up, answer
        assert case.method.upper() in UNSAFE, answer
        assert "CSRF" in answer["detail"]
    else:
        assert status == 401, (status, answer)


def assert_accepted_or_explained(response: Any) -> None:
    """A schema-valid request by a valid caller is served, or refused for a reason that the
    document cannot express: a missing row (404, or 422 for one named in the body or query),
    a right the caller lacks (403), a conflict (409), or a run the time model refuses (422)."""
    status = response.status_code
    if status == 422:
        detail = json.loads(response.content)["detail"]
        assert detail.startswith(MISSING_REFERENCES + TIME_MODEL_REFUSALS + UNREACHABLE_URLS), (
            detail
        )
    else:
        assert status in (200, 201, 204, 403, 404, 409), response.content


def test_the_document_declares_every_error_an_operation_can_answer(api_schema: Any) -> None:
    """What the fuzzing cannot be relied on to hit each time: a body over the limit (413), a
    session cookie without its CSRF token on an unsafe method (403), no database (503)."""
    for result in api_schema.get_all_operations():
        operation = result.ok()
        declared = set(operation.definition.raw["responses"])
        assert {"401", "413", "503"} <= declared, operation.label
        if operation.method.upper() in UNSAFE:
            assert "403" in declared, operation.label


@pytest.mark.parametrize(
    "text",
    [
        *["a", " a ", "", " ", "\t\n", "\u3000", "\u00a0x", "\x1c", "\ufeff", "a\x00", "\x00"],
        *["x" * 200, "x" * 201, "\x85" + "x" * 200, " " + "x" * 199 + "\u3000", "x" * 500],
        *[" " + "x" * 500 + " ", "x" * 501, "\x00" + "x" * 200, " " * 600],
    ],
    ids=lambda text: repr(text) if len(text) < 12 else f"{text[:2]!r}+{len(text) - 2}",
)
def test_the_documented_text_agrees_with_validation(text: str) -> None:
    """Whatever the document says of a designation or a description, the API does."""

    def documented(schema: dict[str, Any]) -> bool:
        return (
            schema.get("minLength", 0) <= len(text) <= schema.get("maxLength", len(text))
            and re.search(schema["pattern"], text) is not None
        )

    def accepted(model: type[Schema], data: dict[str, Any]) -> bool:
        try:
            model.model_validate(data)
        except pydantic.ValidationError:
            return False
        return True

    designation = ProjectIn.model_json_schema()["properties"]["designation"]
    description = TimesheetIn.model_json_schema()["properties"]["description"]
    assert accepted(ProjectIn, {"code": "x", "designation": text}) == documented(designation)
    assert accepted(TimesheetIn, {"project": 1, "description": text}) == documented(description)
