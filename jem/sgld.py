"""Stochastic gradient Langevin dynamics: samples from p(x) ∝ exp(-E(x)) by noisy descent.

    x <- x - step_size * grad_x E(x) + noise_std * N(0, I)      [then clamp to the data range]

Proper Langevin dynamics uses noise_std = sqrt(2 * step_size); JEM (like most EBM training code)
decouples the two (step_size=1, noise_std=0.01), which samples a colder distribution but mixes
fast enough for the short-run chains of training. The sampler is a pure function: the model's
mode, its parameters' requires_grad and the grad mode are as before when it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from jem._frozen import frozen_for_input_grads

__all__ = ["EnergyModel", "SGLDConfig", "run_chain", "sgld_sample"]


class EnergyModel(Protocol):
    """Anything with an energy: a JEM, or a test's analytic module."""

    def energy(self, x: Tensor, y: Tensor | None = None) -> Tensor: ...


@dataclass(frozen=True)
class SGLDConfig:
    steps: int = 20
    step_size: float = 1.0
    noise_std: float = 0.01
    clamp: tuple[float, float] | None = (-1.0, 1.0)

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.step_size < 0 or self.noise_std < 0:
            raise ValueError(
                f"step_size and noise_std must be >= 0, got {self.step_size}, {self.noise_std}"
            )
        if self.clamp is not None:
            lo, hi = self.clamp
            if not lo < hi:
                raise ValueError(f"clamp must be (low, high) with low < high, got {self.clamp}")
            object.__setattr__(self, "clamp", (float(lo), float(hi)))


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    # draw on the generator's device so a CPU generator reproduces the same chain anywhere
    device = generator.device if generator is not None else x.device
    eps = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
    return eps.to(x.device)


def sgld_sample(
    model: EnergyModel,
    x_init: Tensor,
    config: SGLDConfig,
    y: Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Run `config.steps` SGLD steps from `x_init`; with `y`, sample from p(x | y) via E(x, y).

    Returns a detached tensor. Same generator state -> bit-identical samples on CPU.
    """
    if y is not None and y.shape[0] != x_init.shape[0]:
        raise ValueError(f"y has {y.shape[0]} labels for {x_init.shape[0]} chains")
    with frozen_for_input_grads(model):
        return run_chain(model, x_init.detach().clone(), config, y, lambda x: _noise(x, generator))


def run_chain(
    model: EnergyModel,
    x: Tensor,
    config: SGLDConfig,
    y: Tensor | None,
    noise: Callable[[Tensor], Tensor],
) -> Tensor:
    """The chain itself, for callers already inside `frozen_for_input_grads(model)`.

    `noise(x)` returns N(0, I) draws shaped like `x`. Nothing here reads a value back to the
    host, so on CUDA the whole chain is queued without a synchronisation (and can be captured
    in a CUDA graph: jem.sgld_graph).
    """
    for _ in range(config.steps):
        x.requires_grad_(True)
        energy = model.energy(x) if y is None else model.energy(x, y)
        # grad w.r.t. x only: chains are independent, so the gradient of the summed energy
        # is each chain's own gradient, and no parameter .grad is ever accumulated
        (grad,) = torch.autograd.grad(energy.sum(), x)
        with torch.no_grad():
            x = x - config.step_size * grad + config.noise_std * noise(x)
            if config.clamp is not None:
                x = x.clamp(*config.clamp)
    return x.detach()
