"""deploy/k8s/kserve-inferenceservice.yaml: a KServe custom predictor speaking the v2 protocol.

KServe's CRD schema is not available offline, so the predictor is checked in two parts: its
pod fields (KServe inlines a PodSpec) strictly against Kubernetes' own Pod schema, and its
KServe fields against the names KServe's ComponentExtensionSpec defines."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service import Settings, create_app
from tests.deploy._deploy_helpers import K8S_DIR, ROOT, find_tool, load_yaml

KUBERNETES_VALIDATE = find_tool("kubernetes-validate")
MANIFEST = K8S_DIR / "kserve-inferenceservice.yaml"
# serving.kserve.io/v1beta1 ComponentExtensionSpec (+ PredictorSpec's own) field names
KSERVE_FIELDS = {
    "minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "containerConcurrency",
    "timeout", "canaryTrafficPercent", "logger", "batcher", "labels", "annotations",
    "deploymentStrategy", "model", "workerSpec",
}  # fmt: skip


def predictor() -> dict[str, Any]:
    isvc = load_yaml(MANIFEST)
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["kind"] == "InferenceService"
    spec: dict[str, Any] = isvc["spec"]["predictor"]
    return spec


@pytest.mark.skipif(
    KUBERNETES_VALIDATE is None, reason="kubernetes-validate not installed (PyPI package)"
)
@pytest.mark.parametrize("version", ["1.28.0", "1.37.0"])
def test_predictor_pod_fields_match_the_pod_schema(version: str, tmp_path: Path) -> None:
    assert KUBERNETES_VALIDATE is not None
    pod_spec = {k: v for k, v in predictor().items() if k not in KSERVE_FIELDS}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "jem"}, "spec": pod_spec}
    path = tmp_path / "pod.yaml"
    path.write_text(yaml.safe_dump(pod))
    result = subprocess.run(
        [KUBERNETES_VALIDATE, "--strict", "--quiet", "-k", version, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_kserve_fields_and_the_manifest_stays_out_of_kustomize() -> None:
    spec = predictor()
    # (a misspelt KServe field is not a Pod field either: the strict Pod check above fails)
    assert spec["minReplicas"] <= spec["maxReplicas"]
    assert spec["scaleMetric"] in {"cpu", "memory", "concurrency", "rps"}
    kustomization = load_yaml(K8S_DIR / "kustomization.yaml")
    assert MANIFEST.name not in kustomization["resources"]  # needs the KServe CRDs


def test_container_speaks_v2_on_the_port_kserve_routes_to() -> None:
    spec = predictor()
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"
    env = {e["name"]: e["value"] for e in container["env"]}
    port = container["ports"][0]
    assert port["name"] == "http1"
    assert int(env["JEM_PORT"]) == port["containerPort"]
    assert int(env["JEM_TORCH_THREADS"]) == int(container["resources"]["limits"]["cpu"])
    Settings(**{k.removeprefix("JEM_").lower(): v for k, v in env.items()})  # valid settings
    paths = set(create_app(Settings()).openapi()["paths"])
    for probe, path in [
        ("startupProbe", "/v2/health/ready"),
        ("readinessProbe", "/v2/health/ready"),
        ("livenessProbe", "/v2/health/live"),
    ]:
        assert container[probe]["httpGet"] == {"path": path, "port": port["containerPort"]}
        assert path in paths


def test_runs_as_the_image_user_with_a_writable_metrics_dir() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = int(re.findall(r"^USER (\d+)", dockerfile, flags=re.M)[-1])
    multiproc = re.search(r"PROMETHEUS_MULTIPROC_DIR=(\S+)", dockerfile).group(1)  # type: ignore[union-attr]
    spec = predictor()
    assert spec["securityContext"]["runAsUser"] == uid
    (container,) = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert multiproc in {m["mountPath"] for m in container["volumeMounts"]}
