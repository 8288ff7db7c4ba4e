"""The metric names are a contract between service/ and deploy/: check both sides against it."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.deploy._deploy_helpers import (
    GRAFANA_DIR,
    K8S_DIR,
    PROMETHEUS_DIR,
    contract_metrics,
    load_yaml,
    metric_names,
    rules,
    series_names,
    service_families,
)


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """Series names the service really exports (from its registry), plus Prometheus's `up`."""
    return series_names(service_families()) | {"up"}


def test_metric_names_parse_promql() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (job, le) ("
        'rate(jem_request_duration_seconds_bucket{endpoint!~".*gen.*"}[5m])))'
        " > 2 * clamp_min(sum(rate(jem_queue_wait_seconds_sum[1h] offset 1d)) by (model), 1e-9)"
        ' and on (model) up{job="jem"} == 0 or absent(jem_model_ready) or vector(1)'
        ' + sum(rate(jem_energy_bucket{model=~"$model"}[$__rate_interval]))'
    )
    assert metric_names(expr) == {
        "jem_request_duration_seconds_bucket",
        "jem_queue_wait_seconds_sum",
        "up",
        "jem_model_ready",
        "jem_energy_bucket",
    }


def test_service_registers_exactly_the_contract() -> None:
    contract = contract_metrics()
    assert len(contract) >= 18, "docs/ARCHITECTURE.md's metrics table did not parse"
    assert service_families() == contract


def test_alert_rules_use_exported_metrics(exported: set[str]) -> None:
    for rule in rules():
        unknown = metric_names(rule["expr"]) - exported
        assert not unknown, f"{rule['alert']}: {sorted(unknown)} are not exported by the service"


def test_dashboard_queries_use_exported_metrics(exported: set[str]) -> None:
    for path in sorted((GRAFANA_DIR / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                names = metric_names(target["expr"])
                assert names, f"{path.name} / {panel['title']}: a query that selects no metric"
                unknown = names - exported
                assert not unknown, f"{path.name} / {panel['title']}: {sorted(unknown)} unknown"
        for variable in dashboard["templating"]["list"]:
            metric = variable["definition"].split("(", 1)[1].split(",", 1)[0].strip()
            assert metric in exported, f"{path.name} variable {variable['name']}: {metric}"


def test_autoscaling_metric_uses_exported_metrics(exported: set[str]) -> None:
    adapter = load_yaml(K8S_DIR / "prometheus-adapter-rules.yaml")
    for rule in yaml.safe_load(adapter["data"]["config.yaml"])["rules"]:
        query = rule["metricsQuery"].replace("<<.LabelMatchers>>", 'pod="p"')
        query = query.replace("<<.GroupBy>>", "pod")
        assert metric_names(query) <= exported
        assert metric_names(rule["seriesQuery"]) <= exported


def test_prometheus_scrapes_the_service_as_job_jem() -> None:
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["jem"]["metrics_path"] == "/metrics"
    assert jobs["jem"]["static_configs"][0]["targets"] == ["jem:8000"]
