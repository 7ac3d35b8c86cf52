"""Shared fixtures. Async tests are plain ``async def`` functions.

An async test runs the way Django's own ``TestCase`` runs one: through ``async_to_sync``, so
the ORM calls it makes with ``sync_to_async`` come back to the test's thread and its database
transaction.
"""

from __future__ import annotations

import gc
import inspect
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import AsyncClient

from timesheets.models import Project
from timesheets.permissions import API_PERMISSIONS
from timesheets.services import api_token_create
from worker import process

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """An instant ``seconds`` after T0: the tests' clock."""
    return T0 + timedelta(seconds=seconds)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    async_to_sync(pyfuncitem.obj)(**arguments)
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``postgresql`` need it; on SQLite they are reported as skipped, by name."""
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        return
    skip = pytest.mark.skip(
        reason="needs PostgreSQL: run with DATABASE_URL=postgres://postgres@127.0.0.1:5432/timesheets"
    )
    for item in items:
        if item.get_closest_marker("postgresql"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _collector_as_it_was() -> Iterator[None]:
    """A lifespan startup tunes the process's garbage collector (config/collector.py): each
    test starts and ends with Python's own settings."""
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()


@pytest.fixture(autouse=True)
def _no_runner_outlives_its_test(settings: Any) -> Iterator[None]:
    """Requests must not start the process's runner unless a test asks for it, and a runner
    a test started is stopped before the next test."""
    settings.WORKER_AUTOSTART = False
    yield
    process.stop(timeout=15)
    process.set_factory(process.build_runner)
    process.mark_serving_loop(None)


@pytest.fixture
def on_postgresql() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    def make(username: str, *, is_staff: bool = False, permissions: Iterable[str] = ()) -> User:
        # No password: hashing one costs most of a second; tests log in with force_login.
        user: User = User.objects.create_user(username=username, is_staff=is_staff)
        for permission in permissions:
            app_label, codename = permission.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        return user

    return make


@pytest.fixture
def alice(make_user: Callable[..., User]) -> User:
    return make_user("alice")


@pytest.fixture
def bob(make_user: Callable[..., User]) -> User:
    return make_user("bob")


@pytest.fixture
def staff(make_user: Callable[..., User]) -> User:
    """A staff member as the admin sets one up: with the permissions the API checks."""
    return make_user("sam", is_staff=True, permissions=API_PERMISSIONS)


@pytest.fixture
def project(db: None) -> Project:
    return Project.objects.create(code="acme", designation="ACME rollout")


@pytest.fixture
def token_for(db: None) -> Callable[[User], str]:
    def issue(user: User, *, expires_at: datetime | None = None) -> str:
        return api_token_create(user=user, name="tests", expires_at=expires_at, now=T0).secret

    return issue


@pytest.fixture
def client_for(token_for: Callable[[User], str]) -> Callable[[User], AsyncClient]:
    """An async test client that authenticates as the user with a bearer token."""

    def make(user: User) -> AsyncClient:
        # Given as an ASGI header name: AsyncClient(headers=...) would send it as
        # "http-authorization".
        return AsyncClient(authorization=f"Bearer {token_for(user)}")

    return make


@pytest.fixture
def alice_client(client_for: Callable[[User], AsyncClient], alice: User) -> AsyncClient:
    """Ready-made clients: async tests cannot create tokens (a sync DB write) themselves."""
    return client_for(alice)


@pytest.fixture
def bob_client(client_for: Callable[[User], AsyncClient], bob: User) -> AsyncClient:
    return client_for(bob)


@pytest.fixture
def staff_client(client_for: Callable[[User], AsyncClient], staff: User) -> AsyncClient:
    return client_for(staff)


@pytest.fixture
def settings_limits(settings: Any) -> Any:
    """Settings with the domain's default limits, whatever the environment says."""
    settings.TIMESHEETS_MAX_RUNNING_PER_USER = 1
    settings.TIMESHEETS_MAX_RUNNING_HOURS = 12
    return settings
