"""The provisioned Grafana dashboard: valid JSON, a sane layout, and the panels the issue lists."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.deploy._deploy_helpers import GRAFANA_DIR, load_yaml, metric_names

DASHBOARD = GRAFANA_DIR / "dashboards" / "jem-service.json"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_identity(dashboard) -> None:
    assert dashboard["uid"] == "jem-service"
    assert dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_panels_use_the_provisioned_datasource(dashboard) -> None:
    uid = load_yaml(GRAFANA_DIR / "provisioning/datasources/prometheus.yml")["datasources"][0][
        "uid"
    ]
    for panel in panels(dashboard):
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid


def test_layout_fits_the_grid_without_overlaps(dashboard) -> None:
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert g["x"] >= 0, panel["title"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        area = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area


def test_every_panel_the_issue_asks_for(dashboard) -> None:
    """traffic, latency percentiles, batch sizes, queue depth, OOD rate by score, energy
    distribution (a heatmap), generation time: each by the metric its panel must query."""
    queried: dict[str, set[str]] = {}
    for panel in panels(dashboard):
        for target in panel["targets"]:
            for name in metric_names(target["expr"]):
                queried.setdefault(name, set()).add(panel["type"])
    wanted = {
        "jem_requests_total": "timeseries",
        "jem_request_duration_seconds_bucket": "timeseries",
        "jem_batch_size_bucket": "timeseries",
        "jem_queue_depth": "timeseries",
        "jem_ood_flags_total": "timeseries",
        "jem_energy_bucket": "heatmap",
        "jem_generation_duration_seconds_bucket": "timeseries",
    }
    for metric, panel_type in wanted.items():
        assert panel_type in queried.get(metric, set()), f"no {panel_type} panel on {metric}"
    percentiles = [
        t["expr"]
        for p in panels(dashboard)
        for t in p["targets"]
        if "jem_request_duration_seconds_bucket" in t["expr"]
    ]
    assert {"0.5", "0.9", "0.99"} <= {e.split("(", 1)[1].split(",", 1)[0] for e in percentiles}
    ood = [
        t["expr"] for p in panels(dashboard) for t in p["targets"] if "jem_ood_flags" in t["expr"]
    ]
    assert any("score" in e.split("jem_ood_flags_total", 1)[0] for e in ood), "OOD rate by score"


def test_heatmap_reads_prometheus_buckets(dashboard) -> None:
    heatmaps = [p for p in panels(dashboard) if p["type"] == "heatmap"]
    for panel in heatmaps:
        assert panel["options"]["calculate"] is False, "buckets come from Prometheus"
        assert all(t["format"] == "heatmap" for t in panel["targets"])
        assert all("by (le)" in t["expr"] for t in panel["targets"])


def test_model_variable_filters_the_queries(dashboard) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["model"]["includeAll"]
    assert variables["model"]["multi"]
    filtered = [t["expr"] for p in panels(dashboard) for t in p["targets"] if "$model" in t["expr"]]
    assert len(filtered) >= len(panels(dashboard)) - 1  # all but the loaded-models table
