"""The JEM wrapper: a classifier's logits reinterpreted as energies (Grathwohl et al. 2020).

A classifier f(x) -> logits defines a joint energy E(x, y) = -f(x)[y], so
    p(x, y) ∝ exp(f(x)[y]),   p(x) ∝ sum_y exp(f(x)[y]) = exp(logsumexp f(x)),
and p(y|x) = softmax(f(x)) is unchanged: the normaliser Z cancels. Hence
E(x) = -logsumexp_y f(x)[y], and log p(x) = -E(x) up to the (unknown) log Z.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import Tensor, nn

__all__ = ["JEM", "energy_from_logits", "use_fast_layout"]

_M = TypeVar("_M", bound=nn.Module)


def use_fast_layout(model: _M, device: torch.device | str) -> _M:
    """Put 4-D (conv) weights in channels-last order on CPU and CUDA, in place; returns the model.

    oneDNN's CPU convolutions work in NHWC: with NCHW weights every conv reorders its operands
    first. Channels-last weights make the activations channels-last too, with values equal up
    to float rounding; measured on the digits CNN, SGLD steps and forward passes run 1.2-1.3x
    faster (docs/benchmarks.md). On CUDA, cuDNN's tensor-core kernels are NHWC as well: a
    WRN-28-10 SGLD step in bf16 went from 6.7 to 5.4 ms on an H200 (docs/deployment.md). Other
    devices are left alone. Weights are saved contiguous whatever their layout (model_store),
    so checkpoints do not depend on it.
    """
    if torch.device(device).type in ("cpu", "cuda"):
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def energy_from_logits(logits: Tensor, y: Tensor | None = None) -> Tensor:
    """The one energy formula: -logsumexp(logits) per row, or -logits[y] when `y` is given."""
    if y is None:
        return -torch.logsumexp(logits, dim=-1)
    return -logits.gather(-1, y.long().unsqueeze(-1)).squeeze(-1)


class JEM(nn.Module):
    """Wraps a backbone (anything with `.num_classes` and `forward(x) -> logits`)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        num_classes = getattr(backbone, "num_classes", None)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError("backbone must have an integer attribute num_classes >= 1")
        self.backbone = backbone
        self.num_classes: int = num_classes

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.backbone(x)
        return logits

    def energy(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """E(x) = -logsumexp f(x), shape (B,); with labels, E(x, y) = -f(x)[y]."""
        return energy_from_logits(self(x), y)

    def log_px(self, x: Tensor) -> Tensor:
        """Unnormalised log p(x) = -E(x): comparable across inputs, not a true log-density."""
        return -self.energy(x)

    def probs(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        """p(y|x) = softmax(f(x) / T); T > 1 softens over-confident predictions."""
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        return torch.softmax(self(x) / temperature, dim=-1)
