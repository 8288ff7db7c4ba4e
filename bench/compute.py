"""In-process measurements: the model's compute ceiling, the grad-norm path, the SGLD samplers."""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from bench.reference_sgld import backward_sgld, reference_sgld
from jem import JEM, SGLDConfig, sgld_sample
from jem.ood import grad_norm_score

__all__ = ["Rate", "measure_compute", "measure_rate", "measure_samplers"]


@dataclass(frozen=True)
class Rate:
    """Units of work per second: the median over `rounds`, and the best round."""

    per_s: float
    best_per_s: float
    rounds: int
    calls: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "per_s": round(self.per_s, 2),
            "best_per_s": round(self.best_per_s, 2),
            "rounds": self.rounds,
            "calls_per_round": self.calls,
        }


def measure_rate(
    fn: Callable[[], object], work: float, *, round_s: float, rounds: int, warmup: int = 2
) -> Rate:
    """Call `fn` (doing `work` units each call) in `rounds` rounds of about `round_s` each."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-6)
    calls = max(1, int(round_s / once))
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        rates.append(work * calls / (time.perf_counter() - t0))
    return Rate(statistics.median(rates), max(rates), rounds, calls)


def _classify(model: JEM, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        logits = model(x)
        return torch.softmax(logits, dim=-1)


def measure_compute(model: JEM, x: torch.Tensor, *, round_s: float, rounds: int) -> dict[str, Any]:
    """Images/s of the bare forward (the ceiling), the classify path and the grad-norm path."""

    def forward() -> torch.Tensor:
        with torch.inference_mode():
            out: torch.Tensor = model(x)
            return out

    n = int(x.shape[0])
    forward_rate = measure_rate(forward, n, round_s=round_s, rounds=rounds)
    classify_rate = measure_rate(lambda: _classify(model, x), n, round_s=round_s, rounds=rounds)
    grad_rate = measure_rate(lambda: grad_norm_score(model, x), n, round_s=round_s, rounds=rounds)
    x1 = x[:1]
    single = measure_rate(lambda: _classify(model, x1), 1, round_s=round_s, rounds=rounds)
    return {
        "batch": n,
        "forward_images_per_s": forward_rate.to_dict(),
        "classify_images_per_s": classify_rate.to_dict(),
        "grad_norm_images_per_s": grad_rate.to_dict(),
        "classify_batch1_images_per_s": single.to_dict(),
        "grad_norm_cost_ratio": round(classify_rate.per_s / grad_rate.per_s, 3),
    }


def _paired(a: list[float], b: list[float]) -> float:
    return round(statistics.median(x / y for x, y in zip(a, b, strict=True)), 3)


def measure_samplers(
    model: JEM, x0: torch.Tensor, config: SGLDConfig, *, seed: int, rounds: int
) -> dict[str, Any]:
    """SGLD steps/s at batch `len(x0)`: `jem.sgld_sample` against the official-style loop."""
    # The official code runs its model in PyTorch's default NCHW layout; `model` comes from
    # model_store.load, which puts conv weights in channels-last order on CPU (jem.use_fast_layout).
    # The same loop on a copy in our layout isolates what the loop itself costs.
    official_model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    same_layout_model = copy.deepcopy(model)  # the reference loop changes the model's flags
    g = torch.Generator().manual_seed(seed)
    steps = config.steps

    def bare() -> torch.Tensor:
        return sgld_sample(model, x0, config, generator=g)

    def reference() -> torch.Tensor:
        return reference_sgld(
            official_model, x0, steps, config.step_size, config.noise_std, generator=g
        )

    def reference_same_layout() -> torch.Tensor:
        return reference_sgld(
            same_layout_model, x0, steps, config.step_size, config.noise_std, generator=g
        )

    def backward() -> torch.Tensor:
        return backward_sgld(
            official_model, x0, steps, config.step_size, config.noise_std, generator=g
        )

    # interleaved, round by round, so drifting machine load hits all of them alike
    fns = {
        "bare": bare,
        "reference": reference,
        "reference_same_layout": reference_same_layout,
        "backward": backward,
    }
    rates: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(rounds):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            rates[key].append(steps / (time.perf_counter() - t0))
    rate = {k: Rate(statistics.median(r), max(r), rounds, 1) for k, r in rates.items()}
    return {
        "batch": int(x0.shape[0]),
        "steps_per_call": steps,
        "clamp": config.clamp,
        "bare_steps_per_s": rate["bare"].to_dict(),
        "reference_steps_per_s": rate["reference"].to_dict(),
        "reference_same_layout_steps_per_s": rate["reference_same_layout"].to_dict(),
        "backward_steps_per_s": rate["backward"].to_dict(),
        # medians of the paired (same round) ratios: steadier than ratios of medians
        "bare_over_reference": _paired(rates["bare"], rates["reference"]),
        "bare_over_reference_same_layout": _paired(rates["bare"], rates["reference_same_layout"]),
        "bare_over_backward": _paired(rates["bare"], rates["backward"]),
    }
