"""The report's acceptance table reads the right numbers and judges them correctly."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from jem.metrics import expected_calibration_error
from training.eval_metrics import ECE_BINS, bootstrap_interval
from training.report import render_report, target_checks

SETS = ("uniform_noise", "photo_patches")


def _result(ref: str, ece: float, auroc: float, linf01: float, judged: float) -> dict[str, Any]:
    ood = {
        score: {
            **{s: {"auroc": auroc, "fpr95": 0.1, "flagged": 0.9} for s in SETS},
            "in_distribution": {"flagged": 0.05},
        }
        for score in ("energy", "grad_norm", "max_softmax")
    }
    bins = {"edges": [0.0, 1.0], "confidence": [0.9], "accuracy": [0.9], "count": [10]}
    quality = {"fid_samples": 3.0, "fid_real": 1.0, "is_samples": 8.0, "is_real": 9.5, "n_real": 10}
    return {
        "ref": ref,
        "classification": {
            "n": 10,
            "accuracy": 0.98,
            "ece": 2 * ece,
            "ece_calibrated": ece,
            "temperature": 1.2,
            "nll": 0.1,
            "nll_calibrated": 0.09,
            "mean_confidence": 0.97,
            "reliability": bins,
            "reliability_calibrated": bins,
        },
        "ood": ood,
        "robustness": {
            "steps": 20,
            "seed": 0,
            "linf": {"eps": [0.0, 0.1], "accuracy": [0.98, linf01]},
            "l2": {"eps": [0.0, 1.0], "accuracy": [0.98, 0.5]},
        },
        "samples": {
            "noise": {
                "n": 10,
                "sgld": {"steps": 200},
                "judged_as_label": {
                    "svc_pixels": judged,
                    "baseline_net": judged,
                    "all_judges": judged,
                },
                "quality": quality,
            }
        },
    }


def _report(model: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    return {
        "seed": 0,
        "data": {"name": "digits", "split": {"seed": 0}, "test_n": 10},
        "ood_sets": {"names": list(SETS), "n": 10, "seed": 0, "skipped": {}},
        "judges": {
            "svc_pixels": {"fitted_on": {"split": "train", "n": 20}, "test_accuracy": 0.99},
            "baseline_net": {"ref": "base:1"},
            "feature_space": "base:1",
        },
        "results": {"model": model, "baseline": baseline},
    }


def test_all_targets_met() -> None:
    report = _report(
        _result("jem:2", 0.01, 0.995, 0.5, 0.95), _result("base:2", 0.02, 0.9, 0.4, 0.5)
    )
    checks = target_checks(report)
    assert all(ok for _, _, ok in checks)
    text = render_report(report, ["reliability.png"], notes="why it works")
    assert "| metric | jem:2 | base:2 |" in text
    assert "![reliability.png](reliability.png)" in text
    assert "## Discussion\n\nwhy it works" in text


def test_missed_targets_are_flagged() -> None:
    report = _report(
        _result("jem:2", 0.03, 0.95, 0.3, 0.85), _result("base:2", 0.01, 0.96, 0.4, 0.5)
    )
    missed = {target for target, _, ok in target_checks(report) if ok is False}
    assert missed == {
        "calibrated ECE <= 1.5%",
        "raw ECE below the baseline's (the paper's claim)",
        "energy AUROC >= 0.99 on every OOD set",
        "energy AUROC above the baseline's on every set",
        "grad_norm AUROC >= 0.97 on every OOD set",
        "grad_norm AUROC above the baseline's on every set",
        "PGD L-inf eps 0.1 accuracy >= baseline's",
        ">= 90% of noise samples judged as their label by both judges",
    }
    assert "**no**" in render_report(report, [])


def test_the_ece_interval_is_corrected_for_the_resamples_bias() -> None:
    # calibrated by construction (labels drawn from the predicted probabilities), 360 rows:
    # ECE 2.3%, and the plain percentiles of resampled ECE were [3.4%, 8.4%], wholly above it;
    # the bias-corrected interval is [0, 1.1%]: below it, as a bias correction may be
    rng = np.random.default_rng(13)
    probs = torch.tensor(rng.normal(0, 4, (360, 10))).softmax(1).numpy()
    labels = (probs.cumsum(1) < rng.random((360, 1))).sum(1).clip(max=9)
    ece = expected_calibration_error(probs, labels, ECE_BINS)
    lo, hi = bootstrap_interval(
        lambda i: expected_calibration_error(probs[i], labels[i], ECE_BINS), 360
    )
    assert lo <= ece  # the percentile interval started above it
    assert lo <= 0.001 <= hi  # the true ECE of such predictions (python -m bench.ece_interval)
    model, baseline = _result("jem:2", 0.01, 0.995, 0.5, 0.95), _result("b:2", 0.02, 0.9, 0.4, 0.5)
    model["classification"]["ece_ci95"] = [lo, hi]
    text = render_report(_report(model, baseline), [])
    assert (
        f"| ECE, raw (15 bins) | {100 * 2 * 0.01:.2f}% [{100 * lo:.2f}%, {100 * hi:.2f}%]" in text
    )
    assert "bias-corrected (basic) bootstrap interval" in text
