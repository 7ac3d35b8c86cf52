"""Exact time arithmetic inside SQL, compiled to each database's own functions.

PostgreSQL computes with ``timestamptz`` and ``interval`` natively, to the microsecond. Django's
SQLite backend stores instants as UTC text (``YYYY-MM-DD HH:MM:SS[.ffffff]``) and durations as
integer microseconds, and does arithmetic on them by calling back into Python for every row.
These expressions instead compile to SQLite's own ``strftime``, ``substr`` and integer
arithmetic: an instant becomes microseconds since the epoch, the arithmetic is on integers, and
an instant written back is formatted the way Django writes it (no fraction when it is zero), so
that text comparisons between stored instants stay correct.

Every argument must be non-null: SQLite's ``MIN`` and ``MAX`` return null when any argument
is null, where PostgreSQL's ``LEAST`` and ``GREATEST`` ignore it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import DateTimeField, DurationField, Func, Value
from django.db.models.sql.compiler import SQLCompiler

type Sql = tuple[str, list[Any]]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
MICROSECONDS_PER_SECOND = 1_000_000


def _resolved_value(expression: Any) -> Any:
    """The Python value of a literal, or None for anything the database computes."""
    return expression.value if isinstance(expression, Value) else None


def _instant_micros(compiler: SQLCompiler, connection: BaseDatabaseWrapper, expression: Any) -> Sql:
    """SQLite: an instant as integer microseconds since the epoch."""
    value = _resolved_value(expression)
    if isinstance(value, datetime):
        return "%s", [(value - EPOCH) // MICROSECOND]
    if isinstance(expression, _TimeArithmetic):
        return expression.micros_sql(compiler, connection)
    sql, params = compiler.compile(expression)
    # Whole seconds from strftime, the fraction from the text; a missing fraction reads as 0.
    # strftime sees only the whole seconds: it keeps instants to the millisecond and would round
    # a fraction of .9995 or more up to the next second.
    return (
        f"(CAST(strftime('%%s', substr({sql}, 1, 19)) AS INTEGER) * {MICROSECONDS_PER_SECOND} "
        f"+ CAST(substr({sql} || '.000000', 21, 6) AS INTEGER))",
        [*params, *params],
    )


def _duration_micros(
    compiler: SQLCompiler, connection: BaseDatabaseWrapper, expression: Any
) -> Sql:
    """SQLite: a duration as integer microseconds, which is how Django stores it there."""
    value = _resolved_value(expression)
    if isinstance(value, timedelta):
        return "%s", [value // MICROSECOND]
    if isinstance(expression, _TimeArithmetic):
        return expression.micros_sql(compiler, connection)
    sql, params = compiler.compile(expression)
    return sql, list(params)


def _instant_text(compiler: SQLCompiler, connection: BaseDatabaseWrapper, expression: Any) -> Sql:
    """SQLite: an instant as Django's text form."""
    value = _resolved_value(expression)
    if isinstance(value, datetime) or not isinstance(expression, _TimeArithmetic):
        sql, params = compiler.compile(expression)
        return sql, list(params)
    return expression.text_sql(compiler, connection)


def _format_micros(sql: str, params: list[Any]) -> Sql:
    """SQLite: microseconds since the epoch as Django's text form of an instant."""
    return (
        f"(strftime('%%Y-%%m-%%d %%H:%%M:%%S', ({sql}) / {MICROSECONDS_PER_SECOND}, 'unixepoch')"
        f" || CASE WHEN ({sql}) %% {MICROSECONDS_PER_SECOND} = 0 THEN ''"
        f" ELSE printf('.%%06d', ({sql}) %% {MICROSECONDS_PER_SECOND}) END)",
        [*params, *params, *params],
    )


class _TimeArithmetic(Func):
    """A time expression that SQLite compiles through integer microseconds."""

    def micros_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> Sql:
        raise NotImplementedError

    def text_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> Sql:
        return _format_micros(*self.micros_sql(compiler, connection))


class _Infix(_TimeArithmetic):
    """``left <operator> right`` on PostgreSQL; through microseconds on SQLite."""

    operator: str

    def __init__(self, left: Any, right: Any) -> None:
        super().__init__(left, right)

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> Sql:  # type: ignore[override]
        left, right = (compiler.compile(part) for part in self.get_source_expressions())
        return f"({left[0]} {self.operator} {right[0]})", [*left[1], *right[1]]


class Elapsed(_Infix):
    """``end - start``, a duration."""

    output_field = DurationField()
    operator = "-"

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Sql:  # type: ignore[override]
        return self.micros_sql(compiler, connection)

    def micros_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> Sql:
        end, start = self.get_source_expressions()
        end_sql, end_params = _instant_micros(compiler, connection, end)
        start_sql, start_params = _instant_micros(compiler, connection, start)
        return f"({end_sql} - {start_sql})", [*end_params, *start_params]


class Plus(_Infix):
    """``duration + duration``, a duration."""

    output_field = DurationField()
    operator = "+"

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Sql:  # type: ignore[override]
        return self.micros_sql(compiler, connection)

    def micros_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> Sql:
        left, right = self.get_source_expressions()
        left_sql, left_params = _duration_micros(compiler, connection, left)
        right_sql, right_params = _duration_micros(compiler, connection, right)
        return f"({left_sql} + {right_sql})", [*left_params, *right_params]


class Shift(_Infix):
    """``instant + duration``, an instant."""

    output_field = DateTimeField()
    operator = "+"

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Sql:  # type: ignore[override]
        return self.text_sql(compiler, connection)

    def micros_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> Sql:
        instant, duration = self.get_source_expressions()
        instant_sql, instant_params = _instant_micros(compiler, connection, instant)
        duration_sql, duration_params = _duration_micros(compiler, connection, duration)
        return f"({instant_sql} + {duration_sql})", [*instant_params, *duration_params]


class _Extreme(_TimeArithmetic):
    """The earlier or the later of two instants."""

    output_field = DateTimeField()
    postgresql_function: str
    # Which of the two SQLite picks when the first is below the second.
    first_when_below: bool

    def __init__(self, first: Any, second: Any) -> None:
        super().__init__(first, second)

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> Sql:  # type: ignore[override]
        first, second = (compiler.compile(part) for part in self.get_source_expressions())
        return (
            f"{self.postgresql_function}({first[0]}, {second[0]})",
            [*first[1], *second[1]],
        )

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Sql:  # type: ignore[override]
        return self.text_sql(compiler, connection)

    def micros_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> Sql:
        first, second = self.get_source_expressions()
        first_sql, first_params = _instant_micros(compiler, connection, first)
        second_sql, second_params = _instant_micros(compiler, connection, second)
        function = "MIN" if self.first_when_below else "MAX"
        return f"{function}({first_sql}, {second_sql})", [*first_params, *second_params]

    def text_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> Sql:
        # Compare as numbers, then write whichever wins in its own text form: an instant that
        # is already text (a column, a parameter) is not formatted again for every row.
        first, second = self.get_source_expressions()
        first_micros, first_micros_params = _instant_micros(compiler, connection, first)
        second_micros, second_micros_params = _instant_micros(compiler, connection, second)
        first_text, first_text_params = _instant_text(compiler, connection, first)
        second_text, second_text_params = _instant_text(compiler, connection, second)
        if self.first_when_below:
            chosen, other = (first_text, first_text_params), (second_text, second_text_params)
        else:
            chosen, other = (second_text, second_text_params), (first_text, first_text_params)
        return (
            f"(CASE WHEN {first_micros} < {second_micros} THEN {chosen[0]} ELSE {other[0]} END)",
            [*first_micros_params, *second_micros_params, *chosen[1], *other[1]],
        )


class Earliest(_Extreme):
    """The earlier of two instants."""

    postgresql_function = "LEAST"
    first_when_below = True


class Latest(_Extreme):
    """The later of two instants."""

    postgresql_function = "GREATEST"
    first_when_below = False


def instant(value: datetime) -> Value:
    """An instant given by the caller, as an expression."""
    return Value(value, output_field=DateTimeField())


def duration(value: timedelta) -> Value:
    """A duration given by the caller, as an expression."""
    return Value(value, output_field=DurationField())
