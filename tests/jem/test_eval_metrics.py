"""Calibration and OOD metrics against hand-worked cases and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from jem import (
    accuracy,
    auroc,
    expected_calibration_error,
    fit_temperature,
    fpr_at_tpr,
    negative_log_likelihood,
    reliability_bins,
    threshold_at_tpr,
)


def test_accuracy_takes_tensors_and_arrays() -> None:
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1, 1])
    assert accuracy(logits, labels) == 0.75
    assert accuracy(logits.numpy(), labels.numpy()) == 0.75


def test_ece_hand_worked() -> None:
    # two predictions at confidence 0.9, one right (acc 0.5); two at 0.7, both right (acc 1.0)
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 1])
    # ECE = 2/4 * |0.5 - 0.9| + 2/4 * |1.0 - 0.7| = 0.2 + 0.15
    assert expected_calibration_error(probs, labels) == pytest.approx(0.35)
    assert expected_calibration_error(torch.tensor(probs), torch.tensor(labels)) == pytest.approx(
        0.35
    )
    bins = reliability_bins(probs, labels)
    assert len(bins["edges"]) == 16
    assert sum(bins["count"]) == 4
    full = [b for b, n in enumerate(bins["count"]) if n]
    assert full == [10, 13]  # 0.7 in (0.667, 0.733], 0.9 in (0.867, 0.933]
    assert bins["accuracy"][13] == 0.5
    assert bins["confidence"][10] == pytest.approx(0.7)
    assert bins["accuracy"][0] is None


def test_ece_of_perfectly_calibrated_bins_is_zero() -> None:
    # confidence 0.75 in every row, and exactly 3 of 4 right
    probs = np.tile([0.75, 0.25], (4, 1))
    assert expected_calibration_error(probs, np.array([0, 0, 0, 1])) == pytest.approx(0.0)
    # confidence exactly 1.0 falls in the last bin, fully right
    assert reliability_bins(np.array([[1.0, 0.0]]), np.array([0]))["count"][-1] == 1


def test_auroc_hand_worked() -> None:
    # pairs (out, in): 1 vs {0,1,2} -> 1 + 0.5 + 0; 3 vs {0,1,2} -> 3; total 4.5 / 6
    assert auroc([0.0, 1.0, 2.0], [1.0, 3.0]) == pytest.approx(0.75)
    assert auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert auroc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 0.0
    assert auroc([1.0, 1.0], [1.0]) == 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    s_in = np.round(rng.normal(0.0, 1.0, 500), 1)  # rounding makes many ties
    s_out = np.round(rng.normal(0.7, 1.2, 300), 1)
    labels = np.r_[np.zeros(500), np.ones(300)]  # positive = OOD
    expected = roc_auc_score(labels, np.r_[s_in, s_out])
    assert auroc(s_in, s_out) == pytest.approx(expected, abs=1e-12)


def test_auroc_rejects_empty_and_nan() -> None:
    with pytest.raises(ValueError, match="empty"):
        auroc([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        auroc([0.0, float("nan")], [1.0])


def test_fpr_at_tpr_hand_worked() -> None:
    s_in = np.arange(100.0)  # 0..99: accepting 95% of them needs threshold 94
    s_out = np.arange(50.0, 150.0)  # 50..94 accepted: 45 of 100
    assert threshold_at_tpr(s_in, 0.95) == 94.0
    assert fpr_at_tpr(s_in, s_out, tpr=0.95) == pytest.approx(0.45)
    assert fpr_at_tpr(s_in, s_in + 1000.0) == 0.0  # perfectly separated
    assert fpr_at_tpr(s_in, s_in - 1000.0) == 1.0
    with pytest.raises(ValueError, match="tpr"):
        fpr_at_tpr(s_in, s_out, tpr=0.0)


def test_negative_log_likelihood_by_hand() -> None:
    logits = np.array([[math.log(3.0), 0.0], [0.0, 0.0]])
    labels = np.array([0, 1])
    # p = 3/4 and 1/2
    expected = -(math.log(0.75) + math.log(0.5)) / 2
    assert negative_log_likelihood(logits, labels) == pytest.approx(expected)
    # T = 2 halves the logits: p = sqrt(3) / (sqrt(3) + 1)
    p = math.sqrt(3) / (math.sqrt(3) + 1)
    assert negative_log_likelihood(logits, labels, 2.0) == pytest.approx(
        -(math.log(p) + math.log(0.5)) / 2
    )


@pytest.mark.parametrize("true_t", [0.5, 2.5])
def test_fit_temperature_recovers_a_known_temperature(true_t: float) -> None:
    gen = torch.Generator().manual_seed(0)
    z = 3.0 * torch.randn(20_000, 10, generator=gen)
    # labels drawn from softmax(z / T0): T0 is the calibrating temperature for logits z
    y = torch.multinomial(torch.softmax(z / true_t, dim=1), 1, generator=gen).squeeze(1)
    fit_z, fit_y, test_z, test_y = z[:10_000], y[:10_000], z[10_000:], y[10_000:]
    t = fit_temperature(fit_z, fit_y)
    assert t == pytest.approx(true_t, rel=0.05)
    # and it is better on the held-out half than leaving T = 1
    assert negative_log_likelihood(test_z, test_y, t) < negative_log_likelihood(test_z, test_y)
