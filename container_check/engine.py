"""The Docker engine and compose: found, installed from Debian's packages, or started."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from container_check.shell import CheckFailed, run, say, succeeds

DEBIAN_PACKAGES = ("docker.io", "docker-compose")
DAEMON_START_TIMEOUT = 60.0  # seconds for a new dockerd to answer
DAEMON_STOP_TIMEOUT = 30.0  # seconds for it to stop its containers and exit
FIRST_CLIENT_WITHOUT_BUILDKIT = 23  # from 23.0 on, the client builds with BuildKit only via buildx


@dataclass
class Engine:
    """A Docker client that can build with BuildKit, the compose that goes with it, and the
    daemon when this check started it."""

    docker: str
    compose: tuple[str, ...]
    daemon: subprocess.Popen[bytes] | None = None

    def __call__(
        self,
        *arguments: str,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        return run(
            [self.docker, *arguments],
            timeout=timeout,
            env={"DOCKER_BUILDKIT": "1", **(env or {})},
            input=input,
            check=check,
        )

    def stop(self) -> None:
        """Stop the daemon if this check started it: the machine is left as it was found."""
        if self.daemon is None:
            return
        say("stopping the Docker daemon this check started")
        self.daemon.terminate()
        try:
            self.daemon.wait(DAEMON_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait()
        self.daemon = None


def _clients() -> list[str]:
    """The docker clients on this machine, PATH's first; another client may shadow the one
    that came with the engine's package."""
    found: list[str] = []
    for candidate in filter(None, (shutil.which("docker"), "/usr/bin/docker")):
        seen = candidate in found or os.path.realpath(candidate) in map(os.path.realpath, found)
        if os.access(candidate, os.X_OK) and not seen:
            found.append(candidate)
    return found


def _builds_with_buildkit(client: str) -> bool:
    if succeeds([client, "buildx", "version"]):
        return True
    # Before 23.0 BuildKit is built into the client; after, a client without buildx refuses.
    version = run([client, "version", "--format", "{{.Client.Version}}"], timeout=30, check=False)
    major = version.stdout.strip().split(".")[0]
    return major.isdigit() and int(major) < FIRST_CLIENT_WITHOUT_BUILDKIT


def _compose(client: str) -> tuple[str, ...] | None:
    if succeeds([client, "compose", "version"]):
        return (client, "compose")
    standalone = shutil.which("docker-compose")
    return (standalone,) if standalone else None


def _daemon_answers(client: str) -> bool:
    return succeeds([client, "version", "--format", "{{.Server.Version}}"], timeout=15)


def _install() -> None:
    if os.geteuid() != 0:
        raise CheckFailed(
            "No Docker engine or compose here, and installing them needs root: "
            f"apt-get install {' '.join(DEBIAN_PACKAGES)}"
        )
    install_debian_packages(*DEBIAN_PACKAGES)


def install_debian_packages(*packages: str) -> None:
    say(f"installing {', '.join(packages)} from Debian's packages")
    environment = {"DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update"], timeout=600, env=environment)
    run(["apt-get", "install", "-y", *packages], timeout=900, env=environment)


def _start_daemon(client: str, log: Path) -> subprocess.Popen[bytes]:
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    say(f"starting the Docker daemon (log: {log})")
    with log.open("ab") as output:
        # A session of its own and no inherited descriptors: the daemon must not hold the
        # caller's terminal or pipes open.
        daemon = subprocess.Popen(  # noqa: S603  (the engine's own daemon)
            [dockerd],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + DAEMON_START_TIMEOUT
    while not _daemon_answers(client):
        if daemon.poll() is not None:
            raise CheckFailed(f"dockerd exited with {daemon.returncode}; see {log}")
        if time.monotonic() > deadline:
            daemon.terminate()
            raise CheckFailed(
                f"dockerd did not answer within {DAEMON_START_TIMEOUT:g} s; see {log}"
            )
        time.sleep(0.5)
    return daemon


def prepare(workdir: Path) -> Engine:
    """An engine ready to build and run: installed, started, and a client and compose that
    work with it."""
    if not _clients() or shutil.which("dockerd") is None or not any(map(_compose, _clients())):
        _install()
    clients = _clients()
    daemon = None
    if not any(map(_daemon_answers, clients)):
        daemon = _start_daemon(clients[-1], workdir / "dockerd.log")
    usable = [client for client in clients if _builds_with_buildkit(client)]
    if not usable:
        raise CheckFailed(f"None of the docker clients {clients} builds with BuildKit.")
    compose = _compose(usable[0])
    if compose is None:
        raise CheckFailed("No compose: neither `docker compose` nor docker-compose works.")
    engine = Engine(docker=usable[0], compose=compose, daemon=daemon)
    server = engine("version", "--format", "{{.Server.Version}}").stdout.strip()
    say(f"engine {server}; client {engine.docker}; compose: {' '.join(compose)}")
    return engine


def image_exists(engine: Engine, reference: str) -> bool:
    return engine("image", "inspect", reference, check=False, timeout=30).returncode == 0


def pulled(engine: Engine, reference: str, *, timeout: float = 300) -> bool:
    """The image is here, already or pulled now; False where no registry answers."""
    if image_exists(engine, reference):
        return True
    try:
        return engine("pull", reference, check=False, timeout=timeout).returncode == 0
    except CheckFailed:
        return False  # a registry that never answers: the same as one that says no
