"""Serving on a GPU in the deployment files: compose's `gpu` profile and the k8s GPU overlay
reserve a GPU for the *service* (not only for training) and set JEM_DEVICE / JEM_PRECISION."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.deploy._deploy_helpers import ROOT, find_tool

KUBECTL = find_tool("kubectl")


def test_compose_gpu_profile_reserves_a_gpu_for_the_service() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    gpu = compose["services"]["jem-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["command"][:3] == ["python", "-m", "service"]
    assert gpu["environment"]["JEM_DEVICE"].startswith("${JEM_DEVICE:-cuda")
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "models:/app/model_store/models" in gpu["volumes"]


def test_k8s_overlay_asks_each_serving_pod_for_one_gpu() -> None:
    patch = yaml.safe_load((ROOT / "deploy" / "k8s-gpu" / "serve-on-gpu.yaml").read_text())
    container = patch["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["JEM_DEVICE"] == "cuda"
    assert env["JEM_PRECISION"] == "bf16"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed (only used for kustomize)")
def test_k8s_gpu_overlay_builds() -> None:
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(ROOT / "deploy" / "k8s-gpu")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(result.stdout)}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example.com/jem-train:0.1.0"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
