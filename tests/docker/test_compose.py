"""docker-compose.yml up for real with Debian's docker-compose 1.29: jem + Prometheus (+ Grafana).

The serving image is the one test_image.py built; Prometheus is the official image when it can
be pulled, else one built from Debian's package (deploy/prometheus/Dockerfile), with the same
mounted config and rules. Host ports are free ephemeral ones (JEM_PORT, PROMETHEUS_PORT, ...).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import yaml

from tests.docker import _engine as eng
from tests.docker.test_image import MODEL, wait_healthy
from tests.service_process import free_port

# The first test also waits for the session's image builds, which can outlast the 600 s default.
pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.timeout(2400),
]

COMPOSE_FILE = eng.REPO / "docker-compose.yml"
DOCKER_COMPOSE = shutil.which("docker-compose")
_DEFAULTS = dict(re.findall(r"\$\{(\w+_IMAGE):-([^}]+)\}", COMPOSE_FILE.read_text()))
OFFICIAL_PROMETHEUS = _DEFAULTS["PROMETHEUS_IMAGE"]
GRAFANA_IMAGE = re.search(r"image: (grafana/grafana:\S+)", COMPOSE_FILE.read_text()).group(1)  # type: ignore[union-attr]
RULES = yaml.safe_load((eng.REPO / "deploy/prometheus/rules.yml").read_text())


@dataclass(frozen=True)
class Stack:
    env: dict[str, str]
    jem: str
    prometheus: str
    grafana: str | None
    grafana_error: str | None

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        assert DOCKER_COMPOSE is not None
        return subprocess.run(
            [DOCKER_COMPOSE, "-f", str(COMPOSE_FILE), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=eng.REPO,
        )


@pytest.fixture(scope="module")
def prometheus_image(base_image: str) -> str:
    if eng.pull(OFFICIAL_PROMETHEUS) is None:
        return OFFICIAL_PROMETHEUS
    args = {"BASE_IMAGE": base_image}
    return eng.build(eng.LOCAL_PROMETHEUS_TAG, eng.PROMETHEUS_DOCKERFILE_DIR, args).tag


@pytest.fixture(scope="module")
def stack(serve_image: eng.Build, prometheus_image: str) -> Iterator[Stack]:
    if DOCKER_COMPOSE is None:
        pytest.skip("no docker-compose (make install: Debian's docker-compose)")
    grafana_error = eng.pull(GRAFANA_IMAGE)
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": f"jempytest{uuid.uuid4().hex[:8]}",
        "JEM_IMAGE": serve_image.tag,
        "PROMETHEUS_IMAGE": prometheus_image,
        "JEM_PORT": str(free_port()),
        "JEM_GRPC_PORT": str(free_port()),
        "PROMETHEUS_PORT": str(free_port()),
        "GRAFANA_PORT": str(free_port()),
    }
    services = ["jem", "prometheus"] + ([] if grafana_error else ["grafana"])
    stack = Stack(env, "", "", None, grafana_error)
    up = stack.compose("up", "-d", "--no-build", *services)
    try:
        assert up.returncode == 0, up.stdout + up.stderr

        def container(service: str) -> str:
            return stack.compose("ps", "-q", service).stdout.strip()

        yield Stack(
            env,
            container("jem"),
            container("prometheus"),
            None if grafana_error else container("grafana"),
            grafana_error,
        )
    finally:
        down = stack.compose("down", "-v", "--remove-orphans")
        assert down.returncode == 0, down.stdout + down.stderr


def _query(client: httpx.Client, promql: str) -> list[dict[str, object]]:
    r = client.get("/api/v1/query", params={"query": promql})
    assert r.status_code == 200, r.text
    result: list[dict[str, object]] = r.json()["data"]["result"]
    return result


def _wait_counted(stack: Stack, endpoint: str) -> httpx.Client:
    """Wait until the stack's Prometheus has scraped a 200 of ``endpoint`` from jem; its client."""
    prometheus = httpx.Client(
        base_url=f"http://127.0.0.1:{stack.env['PROMETHEUS_PORT']}", timeout=30
    )
    counted = f'sum(jem_requests_total{{job="jem", endpoint="{endpoint}", status="200"}})'

    def scraped() -> bool:
        result = _query(prometheus, counted)
        return bool(result) and float(result[0]["value"][1]) >= 1  # type: ignore[index]

    what = f"the {endpoint} request in Prometheus (scrape interval 10 s)"
    eng.wait_for(scraped, 90, what, poll_s=2)
    return prometheus


def test_jem_comes_up_healthy_and_prometheus_counts_its_predicts(
    stack: Stack, digit_pngs: tuple[list[bytes], list[int]]
) -> None:
    seconds = wait_healthy(stack.jem)
    print(f"\ncompose jem (2 workers): healthy {seconds:.1f} s after up")
    jem = f"http://127.0.0.1:{stack.env['JEM_PORT']}"
    files = [("files", ("d.png", digit_pngs[0][0], "image/png"))]
    r = httpx.post(f"{jem}/v1/models/{MODEL}/predict", files=files, timeout=60)
    assert r.status_code == 200, r.text

    prometheus = _wait_counted(stack, "predict")
    up = _query(prometheus, 'up{job="jem"}')
    assert [float(s["value"][1]) for s in up] == [1.0]  # type: ignore[index]


def test_jem_serves_grpc_out_of_the_box(
    stack: Stack, digit_pngs: tuple[list[bytes], list[int]]
) -> None:
    """The stack's jem answers the Open Inference Protocol over gRPC on its published port,
    with tritonclient.grpc unchanged, and Prometheus counts the call (endpoint grpc_infer)."""
    import numpy as np
    import tritonclient.grpc as grpcclient

    wait_healthy(stack.jem)
    pngs, labels = digit_pngs
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{stack.env['JEM_GRPC_PORT']}")
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    images = grpcclient.InferInput("images", [len(pngs)], "BYTES")
    images.set_data_from_numpy(np.array(pngs, dtype=object))
    result = client.infer(MODEL, [images], outputs=[grpcclient.InferRequestedOutput("label")])
    right = sum(int(a) == b for a, b in zip(result.as_numpy("label"), labels, strict=True))
    assert right >= 7, (result.as_numpy("label"), labels)  # as test_image.py asks of /v1
    client.close()

    _wait_counted(stack, "grpc_infer")


def test_prometheus_loads_every_alert_rule(stack: Stack) -> None:
    wanted = {
        rule["alert"] for group in RULES["groups"] for rule in group["rules"] if "alert" in rule
    }
    prometheus = httpx.Client(
        base_url=f"http://127.0.0.1:{stack.env['PROMETHEUS_PORT']}", timeout=30
    )

    def evaluated() -> bool:
        r = prometheus.get("/api/v1/rules")
        if r.status_code != 200:
            return False
        rules = [rule for group in r.json()["data"]["groups"] for rule in group["rules"]]
        return bool(rules) and all(rule["health"] != "unknown" for rule in rules)

    eng.wait_for(evaluated, 90, "every rule evaluated (evaluation interval 15 s)", poll_s=2)
    groups = prometheus.get("/api/v1/rules").json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {rule["name"] for rule in rules if rule["type"] == "alerting"} == wanted
    assert {rule["health"] for rule in rules} == {"ok"}, [r for r in rules if r["health"] != "ok"]


def test_grafana_serves_the_provisioned_data_source(stack: Stack) -> None:
    if stack.grafana_error is not None:
        pytest.skip(f"no Grafana image: docker pull {GRAFANA_IMAGE}: {stack.grafana_error}")
    assert stack.grafana is not None
    grafana = f"http://127.0.0.1:{stack.env['GRAFANA_PORT']}"
    eng.wait_for(lambda: _ok(f"{grafana}/api/health"), 120, "Grafana /api/health", poll_s=2)
    r = httpx.get(f"{grafana}/api/datasources", auth=("admin", "admin"), timeout=30)
    assert r.status_code == 200, r.text
    assert [d["url"] for d in r.json()] == ["http://prometheus:9090"]


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
