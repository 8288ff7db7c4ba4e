"""The report's figures as PNG bytes (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

__all__ = ["reliability_png", "robustness_png", "score_histograms_png"]


def _png(fig: Figure) -> bytes:
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out.getvalue()


def reliability_png(classification: Mapping[str, Mapping[str, Any]]) -> bytes:
    """One row per model: reliability diagram before and after temperature scaling."""
    models = list(classification)
    fig, axes = plt.subplots(len(models), 2, figsize=(8, 3.8 * len(models)), squeeze=False)
    for row, label in enumerate(models):
        metrics = classification[label]
        for col, (key, ece_key, title) in enumerate(
            [
                ("reliability", "ece", "raw (T = 1)"),
                ("reliability_calibrated", "ece_calibrated", f"T = {metrics['temperature']:.3g}"),
            ]
        ):
            ax = axes[row][col]
            bins = metrics[key]
            edges = np.asarray(bins["edges"])
            width = edges[1] - edges[0]
            acc = [a if a is not None else 0.0 for a in bins["accuracy"]]
            conf = [c if c is not None else 0.0 for c in bins["confidence"]]
            ax.bar(edges[:-1], acc, width=width, align="edge", edgecolor="k", label="accuracy")
            ax.bar(
                edges[:-1],
                conf,
                width=width,
                align="edge",
                fill=False,
                edgecolor="tab:red",
                hatch="//",
                lw=1,
                label="mean confidence",
            )
            ax.plot([0, 1], [0, 1], "k--", lw=1)
            ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
            ax.set_title(f"{label}, {title}: ECE {100 * metrics[ece_key]:.2f}%")
            ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def score_histograms_png(scores: Mapping[str, Mapping[str, Mapping[str, Tensor]]]) -> bytes:
    """scores[model][score][set] -> one panel per (model, score), test vs every OOD set."""
    models = list(scores)
    names = list(next(iter(scores.values())))
    fig, axes = plt.subplots(
        len(models), len(names), figsize=(4.2 * len(names), 3.2 * len(models)), squeeze=False
    )
    for row, label in enumerate(models):
        for col, score in enumerate(names):
            ax = axes[row][col]
            per_set = scores[label][score]
            values = np.concatenate([v.double().numpy() for v in per_set.values()])
            lo, hi = np.percentile(values, [0.5, 99.5])
            edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, 50)
            for set_name, v in per_set.items():
                ax.hist(
                    np.clip(v.double().numpy(), lo, hi),
                    bins=edges,
                    histtype="step",
                    lw=2 if set_name == "test" else 1,
                    label=set_name,
                    density=True,
                )
            ax.set_title(f"{label}: {score}")
            ax.set_xlabel("score (higher = more OOD)")
            ax.legend(fontsize=7)
    return _png(fig)


def robustness_png(
    curves: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]],
) -> bytes:
    """curves[model][norm] = {"eps": [...], "accuracy": [...]}: accuracy under PGD vs eps."""
    norms = sorted({norm for per_model in curves.values() for norm in per_model})
    fig, axes = plt.subplots(1, len(norms), figsize=(5 * len(norms), 3.6), squeeze=False)
    for col, norm in enumerate(norms):
        ax = axes[0][col]
        for label, per_model in curves.items():
            if norm in per_model:
                ax.plot(per_model[norm]["eps"], per_model[norm]["accuracy"], "o-", label=label)
        ax.set(xlabel=f"{norm} eps (inputs in [-1, 1])", ylabel="accuracy", ylim=(0, 1.02))
        ax.set_title(f"PGD {norm}")
        ax.grid(alpha=0.3)
        ax.legend()
    return _png(fig)
