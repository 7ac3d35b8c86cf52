"""``python -m container_check [--cold]``: see the package's docstring."""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

from container_check import bases, image, scenario
from container_check.api import Api
from container_check.engine import Engine, prepare
from container_check.shell import CheckFailed, say
from container_check.stack import Stack

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
COMPOSE_FILE = ROOT / "compose.yaml"
CHECK_OVERRIDE = HERE / "compose.check.yaml"
LOCAL_POSTGRES_OVERRIDE = HERE / "compose.local-postgres.yaml"
UP_TIMEOUT = 300.0  # seconds: PostgreSQL's first start, then the migrations


def _compose_settings() -> tuple[str, float]:
    """compose.yaml's database image and web's stop grace period, in seconds."""
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    grace = services["web"]["stop_grace_period"]
    if not grace.endswith("s") or not grace[:-1].isdigit():
        raise CheckFailed(f"web's stop_grace_period {grace!r} is not a number of seconds")
    return services["db"]["image"], float(grace[:-1])


def _stack(engine: Engine, database: str | None) -> Stack:
    files = [COMPOSE_FILE, CHECK_OVERRIDE]
    environment = {
        "TIMESHEETS_IMAGE": image.IMAGE,
        "WEB_PUBLISH": "127.0.0.1:",  # a free port on the loopback
        "SECRET_KEY": secrets.token_urlsafe(50),
        "POSTGRES_PASSWORD": secrets.token_urlsafe(18),
    }
    if database is not None:
        files.append(LOCAL_POSTGRES_OVERRIDE)
        environment["LOCAL_POSTGRES_IMAGE"] = database
    return Stack(engine, ROOT, files, environment)


def _forget_everything(engine: Engine) -> float:
    """Remove what earlier runs kept; return how long that took, in seconds."""
    started = time.monotonic()
    bases.forget(engine)
    engine("builder", "prune", "--all", "--force", timeout=300)
    took = time.monotonic() - started
    say(f"--cold: removed the cached images and build cache in {took:.0f} s")
    return took


def _run(engine: Engine) -> dict[str, str]:
    database_image, grace = _compose_settings()
    started = time.monotonic()
    base, database = bases.prepare(engine, image.official_base(ROOT), database_image)
    results = {"base images": f"{time.monotonic() - started:.0f} s"}

    took = image.build(engine, ROOT, base)
    results |= {"build": f"{took:.0f} s", "image size": f"{image.size_mb(engine):.0f} MB"}
    say(f"built {image.IMAGE} in {took:.1f} s: {results['image size']}")

    stack = _stack(engine, database)
    try:
        stack.compose("up", "--detach", "--no-build", timeout=UP_TIMEOUT)
        address = stack.published("web", 8000)
        if not address.startswith("127.0.0.1:"):
            raise CheckFailed(f"web is published on {address}, not on the loopback")
        scenario.wait_until_ready(Api(address))
        say(f"stack up: web ready at http://{address}")
        admin, project = scenario.try_it(stack, address)
        running = scenario.scale_and_kill(stack, admin, project)
        scenario.graceful_stop(stack, running, grace)
    except CheckFailed:
        sys.stdout.write(stack.report())
        raise
    finally:
        stack.down()

    image.alone(engine)
    took = image.rebuild_after_a_change(engine, ROOT, base)
    results["rebuild after a code change"] = f"{took:.0f} s"
    say(f"rebuilt after a code change in {took:.1f} s")
    # Each run leaves build cache for its own source; what earlier runs left goes.
    engine("builder", "prune", "--force", "--keep-storage", "3GB", timeout=300)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m container_check", description=__doc__)
    parser.add_argument(
        "--cold",
        action="store_true",
        help="forget the cached base images and build cache first, as on a new machine",
    )
    options = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="container-check-"))
    started = time.monotonic()
    engine: Engine | None = None
    try:
        engine = prepare(workdir)
        if options.cold:
            # Not part of what the check adds to CI: a new machine has nothing to remove.
            started += _forget_everything(engine)
        results = _run(engine)
    except CheckFailed as failure:
        say(f"FAILED: {failure}")
        say(f"the check's own files (the daemon's log, if it started one): {workdir}")
        return 1
    finally:
        if engine is not None:
            engine.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    summary = ", ".join(f"{name} {value}" for name, value in results.items())
    say(f"passed in {time.monotonic() - started:.0f} s: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
