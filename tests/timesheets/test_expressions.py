"""Time arithmetic in SQL equals Python's, to the microsecond, on the database under test."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from tests.conftest import T0
from timesheets.expressions import (
    Earliest,
    Elapsed,
    Latest,
    Plus,
    Shift,
    duration,
    instant,
)
from timesheets.models import Project, Timesheet

pytestmark = pytest.mark.django_db

SAMPLES = 200


def instants(rng: random.Random) -> datetime:
    """Instants over many years, often with no fraction, sometimes a single microsecond."""
    whole = T0 + timedelta(seconds=rng.randrange(-(10**9), 10**9))
    return whole + timedelta(microseconds=rng.choice([0, 1, 999_999, rng.randrange(10**6)]))


def durations(rng: random.Random, *, negative: bool = False) -> timedelta:
    low = -(10**12) if negative else 0
    return timedelta(microseconds=rng.choice([0, 1, rng.randrange(low, 10**13)]))


@pytest.fixture
def row(alice: Any, project: Project) -> Timesheet:
    """A timesheet row whose time columns the expressions read."""
    return Timesheet.objects.create(owner=alice, project=project, created_at=T0, updated_at=T0)


def evaluate(timesheet: Timesheet, **expressions: Any) -> dict[str, Any]:
    result: dict[str, Any] = (
        Timesheet.objects.filter(pk=timesheet.pk).annotate(**expressions).values(*expressions)
    ).get()
    return result


def test_columns_and_values_compute_exactly(row: Timesheet) -> None:
    rng = random.Random(20261130)
    for _ in range(SAMPLES):
        a, b, d = instants(rng), instants(rng), durations(rng)
        e = durations(rng, negative=True)
        Timesheet.objects.filter(pk=row.pk).update(created_at=a, updated_at=b, imputed=d)

        got = evaluate(
            row,
            elapsed=Elapsed(F("created_at"), F("updated_at")),
            elapsed_value=Elapsed(instant(a), F("updated_at")),
            shifted=Shift(F("created_at"), F("imputed")),
            shifted_value=Shift(F("created_at"), duration(e)),
            plus=Plus(F("imputed"), duration(e)),
            earliest=Earliest(F("created_at"), F("updated_at")),
            latest=Latest(F("created_at"), instant(b)),
            nested=Plus(
                F("imputed"),
                Elapsed(
                    Earliest(instant(a), Shift(F("updated_at"), F("imputed"))), F("created_at")
                ),
            ),
        )

        assert got == {
            "elapsed": a - b,
            "elapsed_value": a - b,
            "shifted": a + d,
            "shifted_value": a + e,
            "plus": d + e,
            "earliest": min(a, b),
            "latest": max(a, b),
            "nested": d + (min(a, b + d) - a),
        }, (a, b, d, e)


def test_written_instants_compare_like_the_ones_django_writes(row: Timesheet) -> None:
    """An instant written by an expression equals, as stored, the same instant saved by Django."""
    whole = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    for value in (whole, whole + timedelta(microseconds=1), whole + timedelta(microseconds=10)):
        Timesheet.objects.filter(pk=row.pk).update(
            created_at=Shift(instant(value - timedelta(hours=1)), duration(timedelta(hours=1))),
            updated_at=value,
        )
        assert Timesheet.objects.filter(pk=row.pk, created_at=F("updated_at")).exists()
        assert Timesheet.objects.filter(pk=row.pk, created_at=value).exists()


def test_no_python_function_is_called_per_row(row: Timesheet) -> None:
    """Django's own arithmetic on SQLite calls back into Python for every row; these do not."""
    with CaptureQueriesContext(connection) as queries:
        evaluate(row, shifted=Shift(F("created_at"), duration(timedelta(seconds=1))))
    (query,) = queries.captured_queries
    assert "django_" not in query["sql"]
    if connection.vendor == "sqlite":
        assert "strftime" in query["sql"]
