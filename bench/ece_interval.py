"""`python -m bench.ece_interval`: how often a 95% bootstrap interval of ECE holds the true ECE.

Synthetic 10-class predictions with a known calibration error: logits ~ N(0, 4^2) per class,
labels drawn from softmax(logits) (calibrated by construction), the model's probabilities
softmax(logits / T) (T < 1: overconfident). The true 15-bin ECE is that of 10^6 such rows;
each of ``--samples`` test sets of ``--n`` rows (360: the digits test split) gets the percentile,
basic (bias-corrected, clipped at 0; what `evaluate` reports) and BCa intervals from 1000
seeded resamples (``scipy.stats.bootstrap``). Prints one JSON line per temperature.
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
from scipy import stats

from jem.metrics import expected_calibration_error
from training.eval_metrics import ECE_BINS

__all__ = ["coverage"]

METHODS = ("percentile", "basic", "BCa")


def _draw(rng: np.random.Generator, n: int, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    logits = rng.normal(0.0, 4.0, (n, 10))
    true = np.exp(logits - logits.max(1, keepdims=True))
    true /= true.sum(1, keepdims=True)
    labels = (true.cumsum(1) < rng.random((n, 1))).sum(1).clip(max=9)
    scaled = np.exp((logits - logits.max(1, keepdims=True)) / temperature)
    return scaled / scaled.sum(1, keepdims=True), labels


def coverage(temperature: float, n: int = 360, samples: int = 40) -> dict[str, float | int]:
    """{true ECE, and per method the test sets (of ``samples``) whose interval held it}."""
    probs, labels = _draw(np.random.default_rng(10**6), 10**6, temperature)
    out: dict[str, float | int] = {
        "temperature": temperature,
        "true_ece": expected_calibration_error(probs, labels, ECE_BINS),
    }
    held = dict.fromkeys(METHODS, 0)
    for seed in range(samples):
        p, y = _draw(np.random.default_rng(seed), n, temperature)
        for method in METHODS:
            with warnings.catch_warnings():  # BCa warns when no resample is below the estimate
                warnings.simplefilter("ignore")
                ci = stats.bootstrap(
                    (np.arange(n),),
                    lambda i, p=p, y=y: expected_calibration_error(p[i], y[i], ECE_BINS),
                    n_resamples=1000,
                    vectorized=False,
                    batch=100,
                    method=method,
                    random_state=np.random.default_rng(0),
                ).confidence_interval
            held[method] += bool(max(0.0, ci.low) <= out["true_ece"] <= max(0.0, ci.high))
    return {**out, **held, "samples": samples}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.ece_interval", description=__doc__)
    p.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.8, 0.6])
    p.add_argument("--n", type=int, default=360)
    p.add_argument("--samples", type=int, default=40)
    args = p.parse_args()
    for t in args.temperatures:
        print(json.dumps(coverage(t, args.n, args.samples)), flush=True)


if __name__ == "__main__":
    main()
