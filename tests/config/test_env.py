"""Reading settings from environment variables. Each test passes its own ``environ``."""

from __future__ import annotations

import re

import pytest

from config import env
from config.env import (
    SettingsError,
    Variable,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_str,
)


@pytest.fixture(autouse=True)
def registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, Variable]:
    """A registry of its own for each test, so the real settings' registry stays exact."""
    variables: dict[str, Variable] = {}
    monkeypatch.setattr(env, "VARIABLES", variables)
    return variables


def refused(message: str) -> pytest.RaisesExc[SettingsError]:
    return pytest.raises(SettingsError, match=message)


class TestRegistry:
    def test_each_variable_is_declared_with_its_default_and_description(
        self, registry: dict[str, Variable]
    ) -> None:
        env_int(
            "A_NUMBER", default=3, minimum=1, description="How many.", environ={"A_NUMBER": "9"}
        )
        env_bool("A_FLAG", default=False, description="Whether.", environ={})
        env_float("A_SPAN", default=0.25, maximum=2, description="How long.", environ={})
        env_choice("A_MODE", default="b", choices=("a", "b", "c"), description="How.", environ={})

        assert registry == {
            "A_NUMBER": Variable("A_NUMBER", "3", "1 or more", "How many."),
            "A_FLAG": Variable("A_FLAG", "false", "`true` or `false`", "Whether."),
            "A_SPAN": Variable("A_SPAN", "0.25", "2 or less", "How long."),
            "A_MODE": Variable("A_MODE", "b", "`a`, `b` or `c`", "How."),
        }

    def test_text_can_be_checked(self) -> None:
        def read(raw: str) -> str:
            return env_str(
                "A_NAME",
                default="x",
                allowed="lowercase letters",
                check=str.islower,
                description="",
                environ={"A_NAME": raw},
            )

        assert read("abc") == "abc"
        with refused(r"^A_NAME='ABC' is not allowed: use lowercase letters\.$"):
            read("ABC")

    def test_a_failing_variable_is_declared_all_the_same(
        self, registry: dict[str, Variable]
    ) -> None:
        with refused("BROKEN"):
            env_int("BROKEN", default=1, description="d", environ={"BROKEN": "x"})

        assert "BROKEN" in registry

    def test_the_errors_are_django_configuration_errors(self) -> None:
        from django.core.exceptions import ImproperlyConfigured

        assert issubclass(SettingsError, ImproperlyConfigured)


class TestStr:
    def test_value_default_and_whitespace(self) -> None:
        assert env_str("S", default="d", description="", environ={}) == "d"
        assert env_str("S", default="d", description="", environ={"S": "  v  "}) == "v"
        assert env_str("S", default="d", description="", environ={"S": ""}) == ""


class TestBool:
    @pytest.mark.parametrize("raw", ["1", "true", "True", "YES", "on", " true "])
    def test_true(self, raw: str) -> None:
        assert env_bool("B", default=False, description="", environ={"B": raw}) is True

    @pytest.mark.parametrize("raw", ["0", "false", "FALSE", "no", "Off"])
    def test_false(self, raw: str) -> None:
        assert env_bool("B", default=True, description="", environ={"B": raw}) is False

    @pytest.mark.parametrize("default", [True, False])
    def test_default(self, default: bool) -> None:
        assert env_bool("B", default=default, description="", environ={}) is default

    @pytest.mark.parametrize("raw", ["", "maybe", "2", "tru", "y", "enabled"])
    def test_invalid(self, raw: str) -> None:
        with refused(r"^B=.* is not a boolean; use true or false\.$"):
            env_bool("B", default=True, description="", environ={"B": raw})


class TestInt:
    @pytest.mark.parametrize(("raw", "value"), [("0", 0), ("42", 42), (" 7 ", 7), ("-3", -3)])
    def test_valid(self, raw: str, value: int) -> None:
        assert env_int("N", default=1, description="", environ={"N": raw}) == value

    def test_default(self) -> None:
        assert env_int("N", default=10, description="", environ={}) == 10

    @pytest.mark.parametrize("raw", ["", "abc", "1.5", "1e3", "nan", "inf", "0x10", "9" * 5000])
    def test_not_a_whole_number(self, raw: str) -> None:
        with refused(r"^N=.* is not a whole number\.$"):
            env_int("N", default=1, description="", environ={"N": raw})

    @pytest.mark.parametrize("raw", ["0", "-1", "-99999"])
    def test_below_the_minimum(self, raw: str) -> None:
        with refused(rf"^N='{raw}' is out of range: use 1 or more\.$"):
            env_int("N", default=1, minimum=1, description="", environ={"N": raw})

    def test_the_minimum_itself_is_allowed(self) -> None:
        assert env_int("N", default=5, minimum=1, description="", environ={"N": "1"}) == 1

    @pytest.mark.parametrize(("raw", "allowed"), [("0", True), ("1", False), ("10", True)])
    def test_a_range_with_zero_for_none(self, raw: str, allowed: bool) -> None:
        def read() -> int:
            return env_int(
                "N",
                default=0,
                minimum=2,
                maximum=10,
                zero_means="none",
                description="",
                environ={"N": raw},
            )

        if allowed:
            assert read() == int(raw)
        else:
            with refused(r"^N='1' is out of range: use 0 \(none\) or from 2 to 10\.$"):
                read()

    def test_above_the_maximum(self) -> None:
        with refused(r"^N='11' is out of range: use 10 or less\.$"):
            env_int("N", default=1, maximum=10, description="", environ={"N": "11"})


class TestFloat:
    @pytest.mark.parametrize(("raw", "value"), [("5", 5.0), ("0.2", 0.2), (" 1e-3 ", 0.001)])
    def test_valid(self, raw: str, value: float) -> None:
        assert env_float("F", default=1, description="", environ={"F": raw}) == value

    @pytest.mark.parametrize("default", [5, 12, 0.2, 0.1234567, 1234567.0, 1e-7])
    def test_the_default_comes_back_exactly(self, default: float) -> None:
        assert env_float("F", default=default, description="", environ={}) == default

    @pytest.mark.parametrize(
        ("raw", "message"),
        [
            ("abc", "is not a number"),
            ("", "is not a number"),
            ("1,5", "is not a number"),
            ("0", "must be greater than 0"),
            ("-1", "must be greater than 0"),
            ("-0.0", "must be greater than 0"),
            ("nan", "is not a finite number"),
            ("NaN", "is not a finite number"),
            ("inf", "is not a finite number"),
            ("-inf", "is not a finite number"),
            ("1e400", "is not a finite number"),
        ],
    )
    def test_worker_tick_seconds_refuses(self, raw: str, message: str) -> None:
        with refused(rf"^WORKER_TICK_SECONDS={re.escape(repr(raw))} {message}\.$"):
            env_float(
                "WORKER_TICK_SECONDS",
                default=5,
                positive=True,
                description="",
                environ={"WORKER_TICK_SECONDS": raw},
            )

    def test_a_minimum(self) -> None:
        assert env_float("F", default=1, minimum=0, description="", environ={"F": "0"}) == 0
        with refused(r"^F='-0.5' is out of range: use 0 or more\.$"):
            env_float("F", default=1, minimum=0, description="", environ={"F": "-0.5"})

    def test_zero_is_fine_unless_positive(self) -> None:
        assert env_float("F", default=1, description="", environ={"F": "0"}) == 0


class TestList:
    @pytest.mark.parametrize(
        ("raw", "value"),
        [
            ("a,b", ["a", "b"]),
            (" a , b ,, ", ["a", "b"]),
            ("", []),
            ("one", ["one"]),
        ],
    )
    def test_items(self, raw: str, value: list[str]) -> None:
        assert env_list("L", default="x", description="", environ={"L": raw}) == value

    def test_default(self) -> None:
        assert env_list("L", default="x,y", description="", environ={}) == ["x", "y"]


class TestChoice:
    def test_valid_and_default(self) -> None:
        choices = ("console", "json")
        assert env_choice("C", default="console", choices=choices, description="", environ={}) == (
            "console"
        )
        assert (
            env_choice(
                "C", default="console", choices=choices, description="", environ={"C": "json"}
            )
            == "json"
        )

    @pytest.mark.parametrize("raw", ["", "xml", "JSON", "json5"])
    def test_invalid_lists_the_choices(self, raw: str) -> None:
        with refused(rf"^C='{raw}' is not one of: console, json\.$"):
            env_choice(
                "C",
                default="console",
                choices=("console", "json"),
                description="",
                environ={"C": raw},
            )
