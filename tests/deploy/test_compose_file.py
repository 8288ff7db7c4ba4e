"""docker-compose.yml: valid for Compose v1 (Debian's docker-compose) and the Compose spec."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy._deploy_helpers import ROOT, find_tool, load_yaml

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKER_COMPOSE = find_tool("docker-compose")
CHECK_JSONSCHEMA = find_tool("check-jsonschema")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(COMPOSE_FILE)
    return loaded


@pytest.mark.skipif(DOCKER_COMPOSE is None, reason="docker-compose not installed (make install)")
def test_docker_compose_config_validates(tmp_path: Path) -> None:
    assert DOCKER_COMPOSE is not None
    result = subprocess.run(
        [DOCKER_COMPOSE, "-f", str(COMPOSE_FILE), "--profile", "train", "config"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # no .env of the developer's leaks in
    )
    assert result.returncode == 0, result.stderr
    resolved = result.stdout
    assert "driver: nvidia" in resolved
    assert "dockerfile: deploy/train.Dockerfile" in resolved


@pytest.mark.skipif(CHECK_JSONSCHEMA is None, reason="check-jsonschema not installed")
def test_matches_the_compose_specification_schema() -> None:
    """The schema modern `docker compose` validates against (vendored by check-jsonschema)."""
    assert CHECK_JSONSCHEMA is not None
    result = subprocess.run(
        [CHECK_JSONSCHEMA, "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_spec_without_version_key(compose) -> None:
    assert "version" not in compose, "the Compose spec dropped it; v1.29 accepts files without"
    assert {"jem", "prometheus", "grafana", "train"} <= set(compose["services"])


def test_service_builds_the_serving_image_read_only(compose) -> None:
    jem = compose["services"]["jem"]
    assert jem["build"] == {"context": "."}, "the Dockerfile's default target is the serving image"
    assert any(str(port).endswith(":8000") for port in jem["ports"])
    assert "healthcheck" not in jem, "the image's HEALTHCHECK (/readyz) is the one definition"
    assert jem["read_only"] is True
    assert jem["tmpfs"] == ["/tmp"]  # PROMETHEUS_MULTIPROC_DIR lives under it
    store = jem["environment"]["JEM_MODEL_STORE"]
    assert f"models:{store}" in jem["volumes"]


def test_gpu_count_is_no_interpolated_string(compose) -> None:
    """Compose 1.29 reads `count: ${VAR:-1}` as a string, and `up` fails on the whole file
    (while `config` passes): a count must be a literal integer or "all"."""
    device = compose["services"]["train"]["deploy"]["resources"]["reservations"]["devices"][0]
    count = device.get("count", "all")
    assert count == "all" or isinstance(count, int), count


def test_host_ports_are_loopback_and_configurable(compose) -> None:
    """Loopback only; JEM_PORT, JEM_GRPC_PORT, PROMETHEUS_PORT, GRAFANA_PORT pick the host
    ports."""
    for name, variables in [
        ("jem", ["JEM_PORT", "JEM_GRPC_PORT"]),
        ("prometheus", ["PROMETHEUS_PORT"]),
        ("grafana", ["GRAFANA_PORT"]),
    ]:
        ports = compose["services"][name]["ports"]
        assert len(ports) == len(variables), ports
        for port, variable in zip(ports, variables, strict=True):
            assert port.startswith(f"127.0.0.1:${{{variable}:-"), port


def test_jem_serves_grpc_on_its_published_port(compose) -> None:
    """gRPC on out of the box: JEM_GRPC_PORT set in the container, and that port published."""
    jem = compose["services"]["jem"]
    container_port = str(jem["environment"]["JEM_GRPC_PORT"])
    assert any(str(port).endswith(f":{container_port}") for port in jem["ports"])
    # the GPU service's default host port is another one: both can run on one host
    default = next(p for p in jem["ports"] if "JEM_GRPC_PORT" in p).split(":-")[1].split("}")[0]
    gpu = compose["services"]["jem-gpu"]["ports"][0].split(":-")[1].split("}")[0]
    assert default != gpu


def test_train_profile_asks_for_a_gpu_and_shares_the_model_store(compose) -> None:
    train = compose["services"]["train"]
    assert train["profiles"] == ["train"]
    assert train["build"]["dockerfile"] == "deploy/train.Dockerfile"
    device = train["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia"
    assert device["capabilities"] == ["gpu"]
    store = compose["services"]["jem"]["environment"]["JEM_MODEL_STORE"]
    assert train["environment"]["JEM_MODEL_STORE"] == store
    assert f"models:{store}" in train["volumes"]
    assert train["command"][0] == "torchrun"
    assert train["command"][-4:-2] == ["training", "train"]
    assert "models" in compose["volumes"]


def test_monitoring_mounts_files_that_exist(compose) -> None:
    for name in ("prometheus", "grafana"):
        for volume in compose["services"][name]["volumes"]:
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    prometheus_mounts = " ".join(compose["services"]["prometheus"]["volumes"])
    assert "deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml" in prometheus_mounts
    assert "deploy/prometheus/rules.yml:/etc/prometheus/rules.yml" in prometheus_mounts


def test_grafana_provisioning_points_at_the_mounted_dashboards(compose) -> None:
    grafana = compose["services"]["grafana"]
    mounts = dict(
        v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("./")
    )
    provider = load_yaml(ROOT / "deploy/grafana/provisioning/dashboards/jem.yml")["providers"][0]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "deploy/grafana/dashboards" / Path(home).name).exists()
    datasource = load_yaml(ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml")
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
