"""Settings from environment variables, read through one helper.

Every variable is declared here once, with its default, the values it allows and a one-line
description, in ``VARIABLES``. The README's settings table is checked against this registry by
the tests, so the two cannot drift apart. A value outside what a variable allows is refused at
start-up with one line naming the variable and what it allows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured


class SettingsError(ImproperlyConfigured):
    """An environment variable holds a value the service cannot use."""


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    allowed: str  # in words, as the README's table gives it
    description: str


VARIABLES: dict[str, Variable] = {}

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _declare(
    name: str, default: str, allowed: str, description: str, environ: Mapping[str, str]
) -> str:
    VARIABLES[name] = Variable(name=name, default=default, allowed=allowed, description=description)
    return environ.get(name, default).strip()


def _parse[T](
    name: str,
    raw: str,
    convert: Callable[[str], T],
    expected: str,
) -> T:
    try:
        return convert(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not {expected}.") from None


def env_str(
    name: str,
    *,
    default: str,
    description: str,
    allowed: str = "any text",
    check: Callable[[str], bool] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> str:
    """Text; with ``check``, only values it accepts (``allowed`` says which, in words)."""
    raw = _declare(name, default, allowed, description, environ)
    if check is not None and not check(raw):
        raise SettingsError(f"{name}={raw!r} is not allowed: use {allowed}.")
    return raw


def env_bool(
    name: str, *, default: bool, description: str, environ: Mapping[str, str] = os.environ
) -> bool:
    raw = _declare(
        name, "true" if default else "false", "`true` or `false`", description, environ
    ).lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean; use true or false.")


def _range_text(*, minimum: float | None, maximum: float | None, zero_means: str | None) -> str:
    """What a range allows, in words: "1 or more", "from 1 to 10", "0 (none) or from 1 to 10"."""
    if minimum is not None and maximum is not None:
        allowed = f"from {minimum:g} to {maximum:g}"
    elif minimum is not None:
        allowed = f"{minimum:g} or more"
    elif maximum is not None:
        allowed = f"{maximum:g} or less"
    else:
        allowed = "any number"
    if zero_means is not None:
        allowed = f"0 ({zero_means}) or {allowed}"
    return allowed


def _check_range(
    name: str,
    raw: str,
    value: float,
    *,
    minimum: float | None,
    maximum: float | None,
    zero_means: str | None,
) -> None:
    """Refuse a value outside ``[minimum, maximum]``, naming the allowed range in one line.

    With ``zero_means``, 0 is also allowed and means what it says (e.g. "no limit").
    """
    if zero_means is not None and value == 0:
        return
    if (minimum is None or value >= minimum) and (maximum is None or value <= maximum):
        return
    allowed = _range_text(minimum=minimum, maximum=maximum, zero_means=zero_means)
    raise SettingsError(f"{name}={raw!r} is out of range: use {allowed}.")


def env_int(
    name: str,
    *,
    default: int,
    description: str,
    minimum: int | None = None,
    maximum: int | None = None,
    zero_means: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> int:
    allowed = _range_text(minimum=minimum, maximum=maximum, zero_means=zero_means)
    raw = _declare(name, str(default), allowed, description, environ)
    value = _parse(name, raw, int, "a whole number")
    _check_range(name, raw, value, minimum=minimum, maximum=maximum, zero_means=zero_means)
    return value


def env_float(
    name: str,
    *,
    default: float,
    description: str,
    minimum: float | None = None,
    maximum: float | None = None,
    zero_means: str | None = None,
    positive: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> float:
    allowed = _range_text(minimum=minimum, maximum=maximum, zero_means=zero_means)
    if positive and minimum is None:
        allowed = "more than 0"
    # repr() spells the default so that it reads back exactly (":g" keeps six digits only).
    raw = _declare(name, repr(float(default)).removesuffix(".0"), allowed, description, environ)
    value = _parse(name, raw, float, "a number")
    if not math.isfinite(value):
        raise SettingsError(f"{name}={raw!r} is not a finite number.")
    if positive and value <= 0:
        raise SettingsError(f"{name}={raw!r} must be greater than 0.")
    _check_range(name, raw, value, minimum=minimum, maximum=maximum, zero_means=zero_means)
    return value


def env_list(
    name: str, *, default: str, description: str, environ: Mapping[str, str] = os.environ
) -> list[str]:
    raw = _declare(name, default, "a comma-separated list", description, environ)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(
    name: str,
    *,
    default: str,
    choices: tuple[str, ...],
    description: str,
    environ: Mapping[str, str] = os.environ,
) -> str:
    quoted = [f"`{choice}`" for choice in choices]
    allowed = " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)
    raw = _declare(name, default, allowed, description, environ)
    if raw not in choices:
        raise SettingsError(f"{name}={raw!r} is not one of: {', '.join(choices)}.")
    return raw
