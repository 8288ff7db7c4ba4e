"""`evaluate` end to end on two tiny models in a temporary store, and the report's target table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_store import ModelStore
from tests.training._tiny_model import train_tiny
from training.calibrate import calibrate
from training.cli import main as cli_main
from training.report import target_checks

# trains two tiny models and runs every evaluation (~15 s on 2 cores)
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def test_evaluate_writes_report_metrics_and_figures(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    train_tiny(store.root, "tiny-jem", seed=0)
    train_tiny(store.root, "tiny-base", seed=1)
    calibrate(store, "tiny-jem")  # the baseline stays uncalibrated: evaluate fits it on val
    out = tmp_path / "report"
    argv = ["evaluate", "tiny-jem", "--against", "tiny-base", "--store", str(store.root)]
    argv += ["--out", str(out), "--per-class", "3", "--pgd-steps", "2", "--sgld-steps", "20"]
    assert cli_main(argv) == 0

    report = json.loads((out / "metrics.json").read_text())
    model, base = report["results"]["model"], report["results"]["baseline"]
    assert model["ref"] == "tiny-jem:2"
    assert base["ref"] == "tiny-base:1"
    assert model["calibration"]["source"] == "manifest"
    assert base["calibration"]["source"] == "fitted now"
    for r in (model, base):
        assert r["calibration"]["fitted_on"]["split"] == "validation"
        c = r["classification"]
        assert c["n"] == report["data"]["test_n"] == 360
        assert 0.5 < c["accuracy"] <= 1.0
        assert 0.0 <= c["ece_calibrated"] <= 1.0
        assert set(r["ood"]) == {"energy", "grad_norm", "max_softmax"}
        for score in r["ood"].values():
            assert set(score) == {*report["ood_sets"]["names"], "in_distribution"}
            assert all(0.0 <= e["auroc"] <= 1.0 for k, e in score.items() if k != "in_distribution")
        linf = r["robustness"]["linf"]
        assert linf["accuracy"][0] == pytest.approx(c["accuracy"])  # eps 0 is clean accuracy
        assert linf["accuracy"][-1] < linf["accuracy"][0]
        assert set(r["samples"]) == {"noise", "buffer"}
        noise = r["samples"]["noise"]
        assert noise["n"] == 30
        assert noise["sgld"]["steps"] == 20
        assert set(noise["judged_as_label"]) == {"svc_pixels", "baseline_net", "all_judges"}
        q = noise["quality"]
        assert q["fid_real"] < q["fid_samples"]  # real held-out digits beat 20 steps of a tiny net
    assert report["judges"]["svc_pixels"]["fitted_on"]["split"] == "train"
    assert report["judges"]["svc_pixels"]["test_accuracy"] > 0.95

    text = (out / "REPORT.md").read_text()
    assert "| metric | tiny-jem:2 | tiny-base:1 |" in text
    for png in ("reliability", "ood_scores", "robustness", "samples_tiny-jem_noise"):
        assert (out / f"{png}.png").read_bytes().startswith(b"\x89PNG")
        assert f"]({png}.png)" in text
    checks = {target: ok for target, _, ok in target_checks(report)}
    assert checks["calibrated ECE <= 1.5%"] == (model["classification"]["ece_calibrated"] <= 0.015)
    assert checks["energy AUROC >= 0.99 on every OOD set"] is False  # a tiny CE net is no detector
