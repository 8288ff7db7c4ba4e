"""End to end on loopback: the service under uvicorn, scraped by a real Prometheus server.

The service starts as the image starts it (`python -m service`, configured by JEM_* variables,
two workers sharing PROMETHEUS_MULTIPROC_DIR); Prometheus scrapes it every second with the
repository's alert rules loaded. After real traffic, the series are read back through
Prometheus's HTTP API, and every alert rule, dashboard query and the autoscaling query is
evaluated there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy._deploy_helpers import (
    GRAFANA_DIR,
    K8S_DIR,
    PROMETHEUS_DIR,
    ROOT,
    find_tool,
    load_yaml,
    rules,
)
from tests.deploy._stack import MODEL, SEED, free_port, png_digits, stop, store_root, wait_for

PROMETHEUS = find_tool("prometheus")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        PROMETHEUS is None,
        reason="the prometheus server binary is not installed (Debian package 'prometheus'; "
        "make install)",
    ),
]

REQUESTS = 24  # predict requests with IMAGES digits each, sent 8 at a time
IMAGES = 3
FULL_OOD = 4  # of them with ?ood=full (adds the grad_norm score)


@dataclass(frozen=True)
class Stack:
    service: str
    prometheus: str
    port: int
    sent_images: int

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; fails the test on any error Prometheus reports."""
        response = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert response.status_code == 200, (expr, body)
        assert body["status"] == "success", (expr, body)
        assert body["data"]["resultType"] == "vector", expr
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str) -> float:
        result = self.query(expr)
        assert len(result) == 1, (expr, result)
        return float(result[0]["value"][1])


def send_traffic(base: str) -> int:
    pngs = png_digits(REQUESTS * IMAGES)

    def predict(i: int) -> int:
        files = [("files", (f"d{j}.png", pngs[i * IMAGES + j], "image/png")) for j in range(IMAGES)]
        params = {"ood": "full"} if i < FULL_OOD else {}
        r = httpx.post(f"{base}/v1/models/{MODEL}/predict", files=files, params=params, timeout=60)
        assert r.status_code == 200, r.text
        return len(r.json()["predictions"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        sent = sum(pool.map(predict, range(REQUESTS)))
    unknown = httpx.post(
        f"{base}/v1/models/no-such-model/predict", files=[("files", ("a.png", pngs[0]))]
    )
    assert unknown.status_code == 404
    generated = httpx.post(
        f"{base}/v1/models/{MODEL}/generate",
        json={"num_samples": 2, "steps": 5, "seed": SEED, "init": "noise"},
        timeout=120,
    )
    assert generated.status_code == 200, generated.text
    return sent


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("deploy-stack")
    port, prom_port = free_port(), free_port()
    env = {
        **os.environ,
        "JEM_HOST": "127.0.0.1",
        "JEM_PORT": str(port),
        "JEM_WORKERS": "2",
        "JEM_TORCH_THREADS": "1",
        "JEM_MODELS": MODEL,
        "JEM_MODEL_STORE": str(store_root(tmp)),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
    }
    service_log = tmp / "service.log"
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(PROMETHEUS_DIR / "rules.yml")],
        "scrape_configs": [
            {"job_name": "jem", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom_log = tmp / "prometheus.log"
    service_url, prom_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{prom_port}"
    with service_log.open("wb") as slog, prom_log.open("wb") as plog:
        service = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=ROOT,
            env=env,
            stdout=slog,
            stderr=subprocess.STDOUT,
        )
        prometheus = None
        try:
            wait_for(
                "service",
                lambda: httpx.get(f"{service_url}/readyz").status_code == 200,
                180,
                service,
                service_log,
            )
            prometheus = subprocess.Popen(
                [
                    str(PROMETHEUS),
                    f"--config.file={tmp / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                cwd=tmp,
                stdout=plog,
                stderr=subprocess.STDOUT,
            )
            wait_for(
                "prometheus",
                lambda: httpx.get(f"{prom_url}/-/ready").status_code == 200,
                60,
                prometheus,
                prom_log,
            )
            sent = send_traffic(service_url)
            stack = Stack(service_url, prom_url, port, sent)
            # Wait until a scrape has seen all of the traffic, and rate() has two samples of it.
            wait_for(
                "a scrape with all the traffic",
                lambda: sum(float(r["value"][1]) for r in stack.query("jem_images_total")) == sent,
                60,
                prometheus,
                prom_log,
            )
            time.sleep(3)
            yield stack
        finally:
            if prometheus is not None:
                stop(prometheus)
            stop(service)


def test_scraped_series_match_the_traffic(stack: Stack) -> None:
    assert stack.value('up{job="jem"}') == 1
    assert stack.sent_images == REQUESTS * IMAGES
    # counters summed over both workers by the multiprocess collector, read back from Prometheus
    ok = f'jem_requests_total{{job="jem", model="{MODEL}", endpoint="predict", status="200"}}'
    assert stack.value(f"sum({ok})") == REQUESTS
    assert stack.value('sum(jem_requests_total{endpoint="predict", status="404", model=""})') == 1
    assert stack.value(f'sum(jem_images_total{{model="{MODEL}"}})') == stack.sent_images
    assert stack.value(f'sum(jem_energy_count{{model="{MODEL}"}})') == stack.sent_images
    checks = f'sum(jem_ood_checks_total{{model="{MODEL}", score="%s"}})'
    assert stack.value(checks % "energy") == stack.sent_images
    assert stack.value(checks % "grad_norm") == FULL_OOD * IMAGES
    assert (
        0
        <= stack.value(f'sum(jem_ood_flags_total{{model="{MODEL}", score="energy"}})')
        <= stack.sent_images
    )
    # histograms arrive with every bucket up to +Inf
    buckets = stack.query(
        f'jem_request_duration_seconds_bucket{{model="{MODEL}", endpoint="predict"}}'
    )
    les = {float(series["metric"]["le"]) for series in buckets}
    assert float("inf") in les
    assert len(les) > 5
    inf = f'jem_request_duration_seconds_bucket{{model="{MODEL}", endpoint="predict", le="+Inf"}}'
    assert stack.value(f"sum({inf})") == REQUESTS
    # each forward pass saw at least one whole request; the classify passes saw every image
    passes = stack.value(f'sum(jem_batch_size_count{{model="{MODEL}"}})')
    assert passes >= 1
    assert stack.value(f'sum(jem_batch_size_sum{{model="{MODEL}"}})') >= stack.sent_images
    assert stack.value(f'sum(jem_generation_requests_total{{model="{MODEL}"}})') == 1
    assert stack.value(f'sum(jem_sgld_steps_total{{model="{MODEL}"}})') >= 5
    # gauges: ready on both workers (min), model info labelled with its version
    assert stack.value(f'min(jem_model_ready{{model="{MODEL}"}})') == 1
    info = stack.query(f'jem_model_info{{model="{MODEL}"}}')
    assert info
    assert all(s["metric"]["version"].isdigit() and s["value"][1] == "1" for s in info)
    assert stack.value(f'sum(jem_queue_depth{{model="{MODEL}"}})') == 0


def test_every_alert_expression_evaluates(stack: Stack) -> None:
    for rule in rules():
        stack.query(rule["expr"])  # parses and executes against real series, or fails


def test_availability_alerts_are_quiet_on_a_healthy_service(stack: Stack) -> None:
    # Latency and queue alerts may go pending on a busy CI machine; these four must not.
    availability = {"JemDown", "JemTargetMissing", "JemModelNotReady", "JemHighErrorRate"}
    by_name = {rule["alert"]: rule["expr"] for rule in rules()}
    for name in sorted(availability):
        assert stack.query(by_name[name]) == [], f"{name} would fire on a healthy service"
    alerts = httpx.get(f"{stack.prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    assert [a for a in alerts if a["labels"]["alertname"] in availability] == []


def test_rules_are_loaded_and_evaluate_cleanly(stack: Stack) -> None:
    groups = httpx.get(f"{stack.prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(loaded) == {rule["alert"] for rule in rules()}
    for name, rule in loaded.items():
        assert rule["health"] == "ok", (name, rule.get("lastError"))


def test_dashboard_queries_evaluate_with_data(stack: Stack) -> None:
    dashboard = json.loads((GRAFANA_DIR / "dashboards" / "jem-service.json").read_text())
    empty = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$model", ".*")
            if not stack.query(expr):
                empty.append(f"{panel['title']}: {expr}")
    # everything but what this traffic cannot produce (no queue overflow, no 5xx, no client gone
    # mid-request) shows data
    allowed = ("rate(jem_queue_rejections_total", 'status=~"5.."', 'status="499"')
    assert [e for e in empty if not any(a in e for a in allowed)] == []


def test_autoscaling_query_evaluates(stack: Stack) -> None:
    adapter = yaml.safe_load(
        load_yaml(K8S_DIR / "prometheus-adapter-rules.yaml")["data"]["config.yaml"]
    )
    for rule in adapter["rules"]:
        query = (
            rule["metricsQuery"]
            .replace("<<.LabelMatchers>>", 'job="jem"')
            .replace("<<.GroupBy>>", "instance")
        )
        result = stack.query(query)
        assert len(result) == 1
        assert float(result[0]["value"][1]) >= 0


def test_image_healthcheck_command(stack: Stack) -> None:
    """The Dockerfile's HEALTHCHECK, run as written: passes on this service, fails without one."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    line = next(text for text in lines if text.strip().startswith('CMD ["python", "-c"'))
    command = json.loads(line.strip()[len("CMD ") :])
    ok = subprocess.run(
        command, env={**os.environ, "JEM_PORT": str(stack.port)}, capture_output=True, timeout=30
    )
    assert ok.returncode == 0, ok.stderr
    down = subprocess.run(
        command, env={**os.environ, "JEM_PORT": str(free_port())}, capture_output=True, timeout=30
    )
    assert down.returncode != 0
