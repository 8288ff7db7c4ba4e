"""What `python -m training sweep` writes once its runs are trained: each finished run screened
on validation data (`training.screen.screen_model`), one row per run, and each variant's mean
over its seeds, as ``OUT/sweep.json`` and ``OUT/sweep.md``."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from training.screen import SCREEN_OOD_SEED, metrics_table, screen_model
from training.sweep_plan import Plan

__all__ = ["mean_by_variant", "screen_runs", "write_report"]

_METRICS = ("accuracy", "ece", "ece_calibrated_crossfit")


def screen_runs(
    plan: Plan,
    results: Mapping[str, Mapping[str, Any]],
    store: Path,
    ood: Mapping[str, Path],
    data_root: str | None,
    seed: int,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """One row per planned run, in plan order: its status and, if it has a final model, the
    screen's metrics (``metrics``) of that model, loaded onto ``device``."""
    from model_store import ModelStore, StoreError
    from training.eval_metrics import dataset_for

    store_ = ModelStore(store)
    datasets: dict[str, Any] = {}  # one data set per distinct split: built once, not per run
    rows = []
    for r in plan.runs:
        row: dict[str, Any] = {"variant": r.variant, "seed": r.seed, "name": r.name}
        row.update(results.get(r.name, {"status": "not run"}))
        if row["status"] in ("trained", "done before"):
            try:
                loaded = store_.load(r.name, device=device)
            except StoreError as exc:  # trained, yet no final model: say so, screen the rest
                row.update(status="failed", error=str(exc))
            else:
                row["ref"] = str(loaded.ref)
                # the table's minutes: the run's own training loop, the same on every re-run
                row["train_seconds"] = loaded.manifest.training.get("duration_s")
                split = json.dumps(loaded.manifest.training.get("split"), sort_keys=True)
                key = f"{split} {loaded.manifest.input_spec!r} {data_root}"
                if key not in datasets:
                    datasets[key] = dataset_for(loaded.manifest, data_root)
                row["metrics"] = screen_model(loaded, datasets[key], seed=seed, ood_folders=ood)
        rows.append(row)
    return rows


def mean_by_variant(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each variant's screen metrics averaged over its screened seeds (``n`` of them)."""
    out = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        screened = [r["metrics"] for r in rows if r["variant"] == variant and "metrics" in r]
        if not screened:
            continue
        mean: dict[str, Any] = {k: statistics.fmean(m[k] for m in screened) for k in _METRICS}
        mean["auroc"] = {
            s: {
                score: statistics.fmean(m["auroc"][s][score] for m in screened)
                for score in screened[0]["auroc"][s]
            }
            for s in screened[0]["auroc"]
        }
        planned = sum(r["variant"] == variant for r in rows)
        spread = max(m["accuracy"] for m in screened) - min(m["accuracy"] for m in screened)
        out.append({"variant": variant, "n": len(screened), "of": planned, **mean})
        out[-1]["accuracy_spread"] = spread
    return out


def _minutes(row: Mapping[str, Any]) -> str:
    seconds = row.get("train_seconds")
    return f"{seconds / 60:.1f}" if isinstance(seconds, int | float) else "-"


def write_report(plan: Plan, rows: list[dict[str, Any]], out: Path) -> str:
    """Write sweep.json and sweep.md under ``out``; returns the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    means = mean_by_variant(rows)
    lines = [
        f"# Sweep of `{plan.preset}`: {len(plan.runs)} run(s), seeds {list(plan.seeds)}",
        "",
        f"Validation split only (`training screen`; OOD sets drawn with seed {SCREEN_OOD_SEED}).",
        "",
    ]
    screened = [{**r["metrics"], **r} for r in rows if "metrics" in r]
    if screened:
        lines.append(
            metrics_table(
                screened,
                (
                    ("run", lambda r: str(r["ref"])),
                    ("status", lambda r: str(r["status"])),
                    ("minutes", _minutes),
                    ("val n", lambda r: str(r["n"])),
                ),
            )
        )
    unscreened = [r for r in rows if "metrics" not in r]
    for r in unscreened:
        code = f", exit code {r['returncode']}" if "returncode" in r else ""
        why = f": {r['error']}" if r.get("error") else ""
        lines.append(f"- `{r['name']}`: {r['status']}{code}{why} (log: logs/{r['name']}.log)")
    if means and len(plan.seeds) > 1:
        lines += ["", "Each variant's mean over its screened seeds:", ""]
        lines.append(
            metrics_table(
                means,
                (
                    ("variant", lambda r: str(r["variant"])),
                    ("seeds screened", lambda r: f"{r['n']} of {r['of']}"),
                    ("val acc spread", lambda r: f"{100 * r['accuracy_spread']:.2f}"),
                ),
            )
        )
    text = "\n".join(lines) + "\n"
    (out / "sweep.md").write_text(text)
    record = {
        "preset": plan.preset,
        "seeds": list(plan.seeds),
        "runs": [
            {**r, "overrides": list(p.overrides)} for r, p in zip(rows, plan.runs, strict=True)
        ],
        "means": means,
    }
    (out / "sweep.json").write_text(json.dumps(record, indent=2) + "\n")
    return text
