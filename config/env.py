"""Settings from environment variables, read through one helper.

Every variable is declared here once, with its default and a one-line description, in
``VARIABLES``. The README's settings table is checked against this registry by the tests, so
the two cannot drift apart.
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
    description: str


VARIABLES: dict[str, Variable] = {}

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _declare(name: str, default: str, description: str, environ: Mapping[str, str]) -> str:
    VARIABLES[name] = Variable(name=name, default=default, description=description)
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
    name: str, *, default: str, description: str, environ: Mapping[str, str] = os.environ
) -> str:
    return _declare(name, default, description, environ)


def env_bool(
    name: str, *, default: bool, description: str, environ: Mapping[str, str] = os.environ
) -> bool:
    raw = _declare(name, "true" if default else "false", description, environ).lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean; use true or false.")


def env_int(
    name: str,
    *,
    default: int,
    description: str,
    minimum: int | None = None,
    environ: Mapping[str, str] = os.environ,
) -> int:
    raw = _declare(name, str(default), description, environ)
    value = _parse(name, raw, int, "a whole number")
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name}={raw!r} is below its minimum of {minimum}.")
    return value


def env_float(
    name: str,
    *,
    default: float,
    description: str,
    minimum: float | None = None,
    positive: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> float:
    # repr() spells the default so that it reads back exactly (":g" keeps six digits only).
    raw = _declare(name, repr(float(default)).removesuffix(".0"), description, environ)
    value = _parse(name, raw, float, "a number")
    if not math.isfinite(value):
        raise SettingsError(f"{name}={raw!r} is not a finite number.")
    if positive and value <= 0:
        raise SettingsError(f"{name}={raw!r} must be greater than 0.")
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name}={raw!r} is below its minimum of {minimum:g}.")
    return value


def env_list(
    name: str, *, default: str, description: str, environ: Mapping[str, str] = os.environ
) -> list[str]:
    raw = _declare(name, default, description, environ)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(
    name: str,
    *,
    default: str,
    choices: tuple[str, ...],
    description: str,
    environ: Mapping[str, str] = os.environ,
) -> str:
    raw = _declare(name, default, description, environ)
    if raw not in choices:
        raise SettingsError(f"{name}={raw!r} is not one of: {', '.join(choices)}.")
    return raw
