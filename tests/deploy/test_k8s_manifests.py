"""The example Kubernetes manifests: they parse, build with kustomize, and agree with the image."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
import yaml

from tests.deploy._deploy_helpers import K8S_DIR, ROOT, find_tool, load_yaml

KUBECTL = find_tool("kubectl")
KUBERNETES_VALIDATE = find_tool("kubernetes-validate")
# Custom resources have no schema in kubernetes-validate; the rest is checked strictly.
CORE_MANIFESTS = ["deployment.yaml", "service.yaml", "pdb.yaml", "hpa.yaml", "train-job.yaml"]
CORE_MANIFESTS += ["prometheus-adapter-rules.yaml"]


def documents(name: str) -> list[dict[str, Any]]:
    with (K8S_DIR / name).open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def kind(name: str, wanted: str) -> dict[str, Any]:
    return next(doc for doc in documents(name) if doc["kind"] == wanted)


def test_every_manifest_parses_and_names_its_kind() -> None:
    files = sorted(K8S_DIR.glob("*.yaml"))
    assert len(files) >= 6
    for path in files:
        for doc in documents(path.name):
            assert doc["apiVersion"]
            assert doc["kind"]
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed (only used for kustomize)")
def test_kustomize_builds_the_serving_stack() -> None:
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(K8S_DIR)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(result.stdout))
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]


@pytest.mark.skipif(
    KUBERNETES_VALIDATE is None, reason="kubernetes-validate not installed (PyPI package)"
)
@pytest.mark.parametrize("version", ["1.28.0", "1.37.0"])
def test_manifests_match_the_kubernetes_schemas(version: str) -> None:
    """Strict: an unknown or misspelt field fails, as `kubectl apply --validate=strict` would."""
    assert KUBERNETES_VALIDATE is not None
    files = [str(K8S_DIR / name) for name in CORE_MANIFESTS]
    result = subprocess.run(
        [KUBERNETES_VALIDATE, "--strict", "--quiet", "-k", version, *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_probes_hit_readiness_and_liveness() -> None:
    pod = kind("deployment.yaml", "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"][0]["containerPort"] == 8000
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["JEM_WORKERS"] == "1"
    assert int(env["JEM_TORCH_THREADS"]) == int(container["resources"]["limits"]["cpu"])


def test_pods_serve_the_service_defaults_shipped_in_the_image() -> None:
    """The Deployment serves what `python -m service` serves, from the store the image ships."""
    from model_store import ModelStore
    from service.settings import Settings

    container = kind("deployment.yaml", "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    defaults = Settings.model_fields["models"].get_default(call_default_factory=True)
    served = env["JEM_MODELS"].split(",") if "JEM_MODELS" in env else defaults
    assert served == defaults
    shipped = ModelStore(ROOT / "model_store" / "models")  # the store the Dockerfile copies
    for ref in served:
        assert shipped.resolve(ref).name == ref


def test_every_probe_is_exempt_from_the_request_limit() -> None:
    """Probes of Kubernetes, Compose and the image answer however many requests are in
    progress (JEM_LIMIT_CONCURRENCY): a pod saturated by slow clients is not restarted."""
    from service.middleware import PROBE_PATHS

    container = kind("deployment.yaml", "Deployment")["spec"]["template"]["spec"]["containers"][0]
    paths = [container[p]["httpGet"]["path"] for p in container if p.endswith("Probe")]
    assert len(paths) == 3
    dockerfile = next(
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if "urlopen" in line
    )
    paths += re.findall(r"'(/[\w/]+)'", dockerfile)
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    checks = [
        " ".join(svc["healthcheck"]["test"]) for svc in services.values() if "healthcheck" in svc
    ]
    jem_checks = [c for c in checks if "urlopen" in c]
    assert jem_checks, "no jem service healthcheck in docker-compose.yml"
    for check in jem_checks:  # one probe path per jem service's healthcheck
        (path,) = re.findall(r"urlopen\('http://[\w.:]+(/[\w/]+)'", check)
        paths.append(path)
    assert len(paths) == 4 + len(jem_checks), paths
    assert set(paths) <= PROBE_PATHS, set(paths) - PROBE_PATHS


def test_pods_run_as_the_image_user_with_writable_metrics_dir() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = int(re.findall(r"^USER (\d+)", dockerfile, flags=re.M)[-1])
    multiproc = re.search(r"PROMETHEUS_MULTIPROC_DIR=(\S+)", dockerfile).group(1)  # type: ignore[union-attr]
    pod = kind("deployment.yaml", "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert multiproc in mounts


def test_autoscaling_on_queue_time_not_cpu() -> None:
    hpa = kind("hpa.yaml", "HorizontalPodAutoscaler")["spec"]
    assert (
        hpa["scaleTargetRef"]["name"] == kind("deployment.yaml", "Deployment")["metadata"]["name"]
    )
    assert [m["type"] for m in hpa["metrics"]] == ["Pods"], "no CPU or memory metric"
    adapter = yaml.safe_load(
        kind("prometheus-adapter-rules.yaml", "ConfigMap")["data"]["config.yaml"]
    )
    exposed = {rule["name"]["as"] for rule in adapter["rules"]}
    assert hpa["metrics"][0]["pods"]["metric"]["name"] in exposed
    assert "jem_queue_wait_seconds" in adapter["rules"][0]["metricsQuery"]


def test_service_selects_the_deployment_pods() -> None:
    labels = kind("deployment.yaml", "Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = kind("service.yaml", "Service")["spec"]["selector"]
    assert selector.items() <= labels.items()
    pdb = kind("pdb.yaml", "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    assert pdb.items() <= labels.items()


def test_training_job_runs_torchrun_on_gpus_into_the_model_store() -> None:
    job = kind("train-job.yaml", "Job")["spec"]
    container = job["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[0] == "torchrun"
    assert command[command.index("-m") + 1 : command.index("-m") + 3] == ["training", "train"]
    nnodes = int(next(c for c in command if c.startswith("--nnodes=")).split("=")[1])
    assert job["parallelism"] == job["completions"] == nnodes
    nproc = int(next(c for c in command if c.startswith("--nproc_per_node=")).split("=")[1])
    assert container["resources"]["limits"]["nvidia.com/gpu"] == nproc
    store = next(e["value"] for e in container["env"] if e["name"] == "JEM_MODEL_STORE")
    assert store in {m["mountPath"] for m in container["volumeMounts"]}
    rendezvous = next(c for c in command if c.startswith("--rdzv-endpoint="))
    service = kind("train-job.yaml", "Service")["metadata"]["name"]
    assert rendezvous.split("=")[1].startswith(f"jem-train-0.{service}:")
    assert job["template"]["spec"]["subdomain"] == service


def test_servicemonitor_sets_the_job_the_rules_expect() -> None:
    monitor = load_yaml(K8S_DIR / "servicemonitor.yaml")
    relabel = monitor["spec"]["endpoints"][0]["relabelings"][0]
    assert relabel == {"targetLabel": "job", "replacement": "jem"}
