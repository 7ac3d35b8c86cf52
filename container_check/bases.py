"""Base images: the official ones when a registry serves them, else made here from Debian's
archive and kept, under a name derived from everything they are made of, for later runs."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from container_check.engine import Engine, image_exists, install_debian_packages, pulled
from container_check.shell import run, say

HERE = Path(__file__).resolve().parent
CACHE_REPOSITORY = "timesheets-check"  # every image this module makes is named under it
DEBIAN_SUITE = "trixie"  # the official python:3.13-slim and postgres:17 images' Debian
DEBIAN_MIRROR = "http://deb.debian.org/debian"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEBOOTSTRAP_TIMEOUT = 900.0  # seconds
BUILD_TIMEOUT = 900.0  # seconds


def cache_name(kind: str, *inputs: bytes | str) -> str:
    """An image name that changes whenever anything the image is made of changes."""
    digest = hashlib.sha256()
    for part in inputs:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big") + data)
    return f"{CACHE_REPOSITORY}/{kind}:{digest.hexdigest()[:16]}"


def debian(engine: Engine) -> str:
    """A minimal Debian image made with debootstrap and imported into the engine."""
    name = cache_name("debian", "debootstrap --variant=minbase", DEBIAN_SUITE, DEBIAN_MIRROR)
    if image_exists(engine, name):
        return name
    if shutil.which("debootstrap") is None:
        install_debian_packages("debootstrap")
    say(f"making a Debian {DEBIAN_SUITE} base with debootstrap")
    with tempfile.TemporaryDirectory(prefix="debootstrap-") as folder:
        root = Path(folder) / "root"
        run(
            ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(root), DEBIAN_MIRROR],
            timeout=DEBOOTSTRAP_TIMEOUT,
        )
        archive = Path(folder) / "root.tar"
        run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(archive), "."], timeout=300)
        engine("import", str(archive), name, timeout=BUILD_TIMEOUT)
    return name


def _built(engine: Engine, kind: str, dockerfile: str, files: dict[str, bytes]) -> str:
    """An image built from one of this folder's Dockerfiles on the Debian base."""
    base = debian(engine)
    recipe = (HERE / dockerfile).read_bytes()
    name = cache_name(kind, base, recipe, *(f"{key}\0".encode() + files[key] for key in files))
    if image_exists(engine, name):
        return name
    say(f"building a local {kind} base image ({dockerfile})")
    with tempfile.TemporaryDirectory(prefix=f"{kind}-base-") as folder:
        context = Path(folder)
        (context / "Dockerfile").write_bytes(recipe)
        for file_name, content in files.items():
            (context / file_name).write_bytes(content)
        engine(
            "build",
            "--progress=plain",
            "--build-arg",
            f"DEBIAN_IMAGE={base}",
            "--tag",
            name,
            str(context),
            timeout=BUILD_TIMEOUT,
        )
    return name


def _python(engine: Engine) -> str:
    """A base with the official image's Python (3.13), trusting what the host trusts."""
    return _built(
        engine, "python", "python.Dockerfile", {"host-ca-bundle.crt": HOST_CA_BUNDLE.read_bytes()}
    )


def _postgres(engine: Engine) -> str:
    """A PostgreSQL 17 server that starts as the official image does."""
    entrypoint = "postgres-entrypoint.sh"
    return _built(
        engine, "postgres", "postgres.Dockerfile", {entrypoint: (HERE / entrypoint).read_bytes()}
    )


def prepare(engine: Engine, python: str, postgres: str) -> tuple[str | None, str | None]:
    """The base to build the app on and the database image to run: None for each official
    image that could be pulled, else the name of its local stand-in."""
    made: dict[str, str] = {}
    for official, make in ((python, _python), (postgres, _postgres)):
        if pulled(engine, official):
            say(f"{official}: here, or pulled now")
            continue
        say(f"{official} cannot be pulled: using a stand-in made from Debian's packages")
        made[official] = make(engine)
        say(f"{official}: stand-in {made[official]}")
    return made.get(python), made.get(postgres)


def forget(engine: Engine) -> None:
    """Remove every image this module made, so that the next run starts cold."""
    listed = engine(
        "image",
        "ls",
        "--filter",
        f"reference={CACHE_REPOSITORY}/*",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    )
    for name in listed.stdout.split():
        engine("image", "rm", "--force", name)
