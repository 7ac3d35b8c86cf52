"""deploy/kubernetes: valid by Kubernetes' own schemas, and the deployment the README describes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.env import VARIABLES
from tests.test_compose import manage_check
from tests.test_dockerfile import arguments, stages
from worker.runner import STOP_TIMEOUT

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
# The oldest Kubernetes the manifests are meant for, and the newest whose schemas
# kubernetes-validate ships.
VERSIONS = ("1.29", "1.37")
POD_OWNERS = ("Deployment/timesheets-web", "Deployment/timesheets-worker", "Job/timesheets-migrate")
WEB_LABELS = {"app.kubernetes.io/name": "timesheets", "app.kubernetes.io/component": "web"}
SECRET_KEYS = {"SECRET_KEY", "DATABASE_URL"}


def manifests() -> list[Path]:
    return sorted(MANIFESTS.glob("*.yaml"))


def load() -> dict[str, dict[str, Any]]:
    """Every resource, by ``Kind/name``."""
    resources: dict[str, dict[str, Any]] = {}
    for path in manifests():
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                resources[f"{document['kind']}/{document['metadata']['name']}"] = document
    return resources


def kubernetes_validate(*paths: Path, version: str) -> subprocess.CompletedProcess[str]:
    program = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent))
    assert program is not None, "kubernetes-validate is a dev dependency: run `uv sync`"
    return subprocess.run(
        [program, "--strict", "--kubernetes-version", version, *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture(scope="module")
def resources() -> dict[str, dict[str, Any]]:
    return load()


def pod_specs(resources: dict[str, dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for owner in POD_OWNERS:
        yield owner, resources[owner]["spec"]["template"]["spec"]


def container(resources: dict[str, dict[str, Any]], owner: str) -> dict[str, Any]:
    (only,) = resources[owner]["spec"]["template"]["spec"]["containers"]
    return dict(only)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_by_the_kubernetes_schemas(version: str) -> None:
    result = kubernetes_validate(*manifests(), version=version)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.findall(r"passed for resource (\S+) against version", result.stdout)
    assert len(passed) == len(load()), result.stdout


def test_the_validation_rejects_a_misspelt_field(tmp_path: Path) -> None:
    broken = tmp_path / "web.yaml"
    broken.write_text((MANIFESTS / "web.yaml").read_text().replace("readinessProbe", "readyProbe"))

    result = kubernetes_validate(broken, version=VERSIONS[-1])

    assert result.returncode != 0
    assert "'readyProbe' was unexpected" in result.stdout + result.stderr


def test_the_resources_of_one_deployment(resources: dict[str, dict[str, Any]]) -> None:
    assert set(resources) == {
        "ConfigMap/timesheets",
        "Secret/timesheets",
        "Job/timesheets-migrate",
        "Deployment/timesheets-web",
        "Service/timesheets-web",
        "PodDisruptionBudget/timesheets-web",
        "HorizontalPodAutoscaler/timesheets-web",
        "Deployment/timesheets-worker",
        "PodDisruptionBudget/timesheets-worker",
    }


def test_each_role_runs_from_the_one_image(resources: dict[str, dict[str, Any]]) -> None:
    roles = {owner: container(resources, owner)["args"] for owner in POD_OWNERS}
    assert roles == {
        "Deployment/timesheets-web": ["web"],
        "Deployment/timesheets-worker": ["worker"],
        "Job/timesheets-migrate": ["migrate"],
    }
    assert {container(resources, owner)["image"] for owner in POD_OWNERS} == {"timesheets:latest"}
    assert resources["Job/timesheets-migrate"]["spec"]["template"]["spec"]["restartPolicy"] == (
        "Never"
    )


def test_web_is_probed_on_readyz_and_healthz(resources: dict[str, dict[str, Any]]) -> None:
    web = container(resources, "Deployment/timesheets-web")
    assert web["ports"] == [{"name": "http", "containerPort": 8000}]
    probes = {
        kind: web[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert {kind: probe["path"] for kind, probe in probes.items()} == {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    allowed = resources["ConfigMap/timesheets"]["data"]["ALLOWED_HOSTS"].split(",")
    for probe in probes.values():
        assert probe["port"] == "http"
        # Django refuses a Host it does not know, and kubelet asks by the pod's address.
        (host,) = [h["value"] for h in probe["httpHeaders"] if h["name"] == "Host"]
        assert host in allowed
    # The entrypoint may wait DATABASE_WAIT_SECONDS for the database before serving.
    startup = web["startupProbe"]
    waits = int(resources["ConfigMap/timesheets"]["data"]["DATABASE_WAIT_SECONDS"])
    assert startup["periodSeconds"] * startup["failureThreshold"] > waits


def test_pods_outlast_the_runners_stop_bound(resources: dict[str, dict[str, Any]]) -> None:
    for owner in ("Deployment/timesheets-web", "Deployment/timesheets-worker"):
        spec = resources[owner]["spec"]["template"]["spec"]
        (only,) = spec["containers"]
        pause = only.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        before_sigterm = int(pause[-1]) if pause else 0
        assert spec["terminationGracePeriodSeconds"] > before_sigterm + STOP_TIMEOUT, owner


def test_pods_run_unprivileged_on_a_read_only_root(resources: dict[str, dict[str, Any]]) -> None:
    image_user = arguments(stages()[-1], "USER")[-1]
    for owner, spec in pod_specs(resources):
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True, owner
        assert f"{context['runAsUser']}:{context['runAsGroup']}" == image_user, owner
        assert spec["automountServiceAccountToken"] is False, owner
        (only,) = spec["containers"]
        assert only["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }, owner
        # uvicorn's log configuration and the metrics files are written under /tmp.
        (mount,) = only["volumeMounts"]
        assert mount["mountPath"] == "/tmp", owner
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        assert "emptyDir" in volumes[mount["name"]], owner
        for kind in ("requests", "limits"):
            assert set(only["resources"][kind]) == {"cpu", "memory"}, owner


def test_configuration_comes_from_the_configmap_and_the_secret(
    resources: dict[str, dict[str, Any]],
) -> None:
    for owner in POD_OWNERS:
        sources = container(resources, owner)["envFrom"]
        assert sources == [
            {"configMapRef": {"name": "timesheets"}},
            {"secretRef": {"name": "timesheets"}},
        ], owner
    assert set(resources["Secret/timesheets"]["stringData"]) == SECRET_KEYS
    settings = set(resources["ConfigMap/timesheets"]["data"])
    assert not settings & SECRET_KEYS, "secrets belong in the Secret"
    entrypoint = set(re.findall(r"\$\{([A-Z_]+)", ENTRYPOINT.read_text()))
    assert settings <= set(VARIABLES) | entrypoint, settings - set(VARIABLES) - entrypoint


def test_the_settings_are_accepted(resources: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    environment = {
        **resources["ConfigMap/timesheets"]["data"],
        **resources["Secret/timesheets"]["stringData"],
        # The example names a PgBouncer host that does not exist here; check reads no database.
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    result = manage_check(environment, "--deploy", "--fail-level", "ERROR")
    assert result.returncode == 0, result.stdout + result.stderr


def test_web_leaves_the_jobs_to_the_workers(resources: dict[str, dict[str, Any]]) -> None:
    web = container(resources, "Deployment/timesheets-web")
    assert {"name": "WORKER_AUTOSTART", "value": "false"} in web["env"]
    assert resources["Deployment/timesheets-worker"]["spec"]["replicas"] >= 2


def test_the_service_budget_and_autoscaler_are_web_s(resources: dict[str, dict[str, Any]]) -> None:
    pods = resources["Deployment/timesheets-web"]["spec"]["template"]["metadata"]["labels"]
    assert pods == WEB_LABELS
    assert resources["Deployment/timesheets-web"]["spec"]["selector"]["matchLabels"] == pods
    service = resources["Service/timesheets-web"]["spec"]
    assert service["selector"] == pods
    assert service["ports"][0]["targetPort"] == "http"
    budget = resources["PodDisruptionBudget/timesheets-web"]["spec"]
    assert budget["selector"]["matchLabels"] == pods
    autoscaler = resources["HorizontalPodAutoscaler/timesheets-web"]["spec"]
    assert autoscaler["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "timesheets-web",
    }
    # A voluntary disruption must never take the last ready web pod.
    assert autoscaler["minReplicas"] > budget["minAvailable"]
    # The autoscaler measures CPU against the request: there must be one.
    assert container(resources, "Deployment/timesheets-web")["resources"]["requests"]["cpu"]
