"""The container check's own pieces: its compose overrides, its cache names, the base it reads.

The check itself (``python -m container_check``) needs a Docker engine and runs from .ci/run;
these tests need none.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from config.env import VARIABLES
from container_check import bases, image
from container_check.__main__ import CHECK_OVERRIDE, LOCAL_POSTGRES_OVERRIDE
from tests.test_compose import check_jsonschema, load_compose
from tests.test_dockerfile import global_arguments

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("override", [CHECK_OVERRIDE, LOCAL_POSTGRES_OVERRIDE])
def test_the_overrides_are_valid_by_the_compose_specification(override: Path) -> None:
    result = check_jsonschema(override)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_check_changes_only_the_accrual_interval_of_the_app() -> None:
    services = yaml.safe_load(CHECK_OVERRIDE.read_text())["services"]
    assert services == {
        "web": {"environment": {"WORKER_TICK_SECONDS": "1"}},
        "worker": {"environment": {"WORKER_TICK_SECONDS": "1"}},
    }
    assert "WORKER_TICK_SECONDS" in VARIABLES
    assert set(services) <= set(load_compose()["services"])


def test_the_local_database_replaces_only_the_image() -> None:
    services = yaml.safe_load(LOCAL_POSTGRES_OVERRIDE.read_text())["services"]
    assert services == {"db": {"image": "${LOCAL_POSTGRES_IMAGE:?the container check sets it}"}}


def test_the_check_builds_on_the_dockerfiles_own_default_base() -> None:
    assert image.official_base(ROOT) == global_arguments()["PYTHON_IMAGE"]


def test_a_cached_image_is_named_by_everything_it_is_made_of() -> None:
    name = bases.cache_name("python", "recipe", b"bundle")
    assert name.startswith(f"{bases.CACHE_REPOSITORY}/python:")
    assert bases.cache_name("python", "recipe", b"bundle") == name, "stable across runs"
    assert bases.cache_name("python", "recipe", b"other bundle") != name
    assert bases.cache_name("python", "other recipe", b"bundle") != name
    # Inputs are delimited: moving bytes from one input to the next is a change too.
    assert bases.cache_name("python", "recipeb", b"undle") != name
