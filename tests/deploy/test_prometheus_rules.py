"""Prometheus's own tools accept the config and the rules, and the rules' unit tests pass."""

from __future__ import annotations

import subprocess

import pytest

from tests.deploy._deploy_helpers import PROMETHEUS_DIR, find_tool, load_yaml, rules

PROMTOOL = find_tool("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package 'prometheus'; make install)"
)

# What the deployment issue asks the alerts to cover, by alert name.
REQUIRED_ALERTS = {
    "JemDown",  # service down
    "JemModelNotReady",  # not ready
    "JemHighErrorRate",  # 5xx rate
    "JemHighLatencyP99",  # p99 latency
    "JemQueueRejecting",  # queue saturation
    "JemQueueBacklog",
    "JemOODFlagRateJump",  # drift: OOD flags against their own past
    "JemEnergyShift",  # drift: the energy histogram moved
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120
    )


@needs_promtool
def test_promtool_accepts_config() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_local_config_scrapes_make_serve() -> None:
    """deploy/prometheus/local.yml (docs/deployment.md): `make serve`'s address, the Compose
    config's job name and rules."""
    result = promtool("check", "config", "local.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    local = load_yaml(PROMETHEUS_DIR / "local.yml")
    compose = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    (job,) = local["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:8000"]
    assert job["job_name"] == compose["scrape_configs"][0]["job_name"] == "jem"
    assert local["rule_files"] == compose["rule_files"]


@needs_promtool
def test_promtool_accepts_rules() -> None:
    result = promtool("check", "rules", "rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


@pytest.mark.slow  # 26 hours of synthetic series, evaluated minute by minute
@needs_promtool
def test_promtool_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", "rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_required_alerts_exist() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names)), "duplicate alert names"
    assert set(names) >= REQUIRED_ALERTS


def test_every_alert_is_labelled_and_documented() -> None:
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        for key in ("summary", "description", "runbook"):
            assert rule["annotations"].get(key), f"{rule['alert']} has no {key}"
        assert "for" in rule, f"{rule['alert']} fires on a single evaluation"


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    """rules_test.yml shows each alert firing at least once and staying quiet at least once."""
    cases = [
        case
        for test in load_yaml(PROMETHEUS_DIR / "rules_test.yml")["tests"]
        for case in test["alert_rule_test"]
    ]
    fires = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    alerts = {rule["alert"] for rule in rules()}
    assert alerts - fires == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown quiet"
