"""Classification, calibration and OOD-detection metrics. Tensors or numpy in, floats out.

Conventions, stated once:
- OOD scores are "higher = more likely out-of-distribution" (see jem.ood).
- auroc: the positive class is OOD; 0.5 is chance, 1.0 perfect separation.
- fpr_at_tpr: the positive class is in-distribution (the ODIN convention): an input is accepted
  as in-distribution when its score is <= the threshold; the threshold accepts a fraction `tpr`
  of the in-distribution inputs, and the result is the fraction of OOD inputs also accepted.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "accuracy",
    "auroc",
    "expected_calibration_error",
    "fit_temperature",
    "fpr_at_tpr",
    "negative_log_likelihood",
    "reliability_bins",
    "threshold_at_tpr",
]

ArrayLike = Tensor | np.ndarray[Any, Any]


def _np(a: ArrayLike) -> np.ndarray[Any, Any]:
    if isinstance(a, Tensor):
        return a.detach().cpu().double().numpy() if a.is_floating_point() else a.cpu().numpy()
    return np.asarray(a)


def _torch64(a: ArrayLike) -> Tensor:
    t = a.detach().cpu() if isinstance(a, Tensor) else torch.from_numpy(np.asarray(a))
    return t.double()


def _scores(a: ArrayLike, name: str) -> np.ndarray[Any, Any]:
    s = _np(a).astype(np.float64).ravel()
    if s.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} contains NaN or infinite scores")
    return s


def accuracy(logits_or_probs: ArrayLike, labels: ArrayLike) -> float:
    pred = _np(logits_or_probs).argmax(axis=-1)
    return float((pred == _np(labels)).mean())


def reliability_bins(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> dict[str, Any]:
    """Per-bin mean confidence, accuracy and count over equal-width confidence bins.

    Bins are (lo, hi] as in Guo et al. 2017 (the first one also takes confidence 0). Empty bins
    have confidence and accuracy None (JSON-friendly), count 0.
    """
    p = _np(probs).astype(np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be (N, K), got shape {p.shape}")
    conf, correct = p.max(axis=1), p.argmax(axis=1) == _np(labels)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges[1:-1], conf, side="left"), 0, n_bins - 1)
    confidence: list[float | None] = []
    acc: list[float | None] = []
    count: list[int] = []
    for b in range(n_bins):
        in_bin = which == b
        n = int(in_bin.sum())
        count.append(n)
        confidence.append(float(conf[in_bin].mean()) if n else None)
        acc.append(float(correct[in_bin].mean()) if n else None)
    return {"edges": edges.tolist(), "confidence": confidence, "accuracy": acc, "count": count}


def expected_calibration_error(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """ECE = sum_b (n_b / N) * |acc_b - conf_b| over equal-width confidence bins."""
    bins = reliability_bins(probs, labels, n_bins)
    total = sum(bins["count"])
    ece = 0.0
    for n, c, a in zip(bins["count"], bins["confidence"], bins["accuracy"], strict=True):
        if n:
            ece += n / total * abs(a - c)
    return ece


def _average_ranks(s: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    # boundaries of runs of equal values
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], s.size]
    mean_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def auroc(scores_in: ArrayLike, scores_out: ArrayLike) -> float:
    """P(score_out > score_in) + 0.5 P(tie): the Mann-Whitney U statistic, normalised."""
    s_in, s_out = _scores(scores_in, "scores_in"), _scores(scores_out, "scores_out")
    ranks = _average_ranks(np.concatenate([s_in, s_out]))
    n_in, n_out = s_in.size, s_out.size
    u = ranks[n_in:].sum() - n_out * (n_out + 1) / 2.0
    return float(u / (n_in * n_out))


def threshold_at_tpr(scores_in: ArrayLike, tpr: float = 0.95) -> float:
    """The smallest threshold t with at least `tpr` of in-distribution scores <= t."""
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    s = np.sort(_scores(scores_in, "scores_in"))
    k = max(1, math.ceil(tpr * s.size - 1e-9))  # guard 0.95 * 100 = 95.00000000000001
    return float(s[k - 1])


def fpr_at_tpr(scores_in: ArrayLike, scores_out: ArrayLike, tpr: float = 0.95) -> float:
    """Fraction of OOD inputs accepted (score <= t) at the t accepting `tpr` of in-distribution."""
    t = threshold_at_tpr(scores_in, tpr)
    return float((_scores(scores_out, "scores_out") <= t).mean())


def negative_log_likelihood(
    logits: ArrayLike, labels: ArrayLike, temperature: float = 1.0
) -> float:
    """Mean -log softmax(logits / T)[label]."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z, y = _torch64(logits), _torch64(labels).long()
    return float(F.cross_entropy(z / temperature, y))


def fit_temperature(logits: ArrayLike, labels: ArrayLike, max_iter: int = 100) -> float:
    """T minimising the NLL of softmax(logits / T) on held-out (logits, labels) (Guo et al.).

    Optimised over log T, which keeps T positive and makes the problem better conditioned.
    """
    z, y = _torch64(logits), _torch64(labels).long()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    t = float(log_t.detach().exp())
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f"temperature fitting diverged (T={t}); check the logits are finite")
    return t
