"""A few hundred steps of plain cross-entropy: the quickly fitted models test fixtures need."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["fit_cross_entropy"]


def fit_cross_entropy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    lr: float,
    generator: torch.Generator,
    batch_size: int = 64,
) -> nn.Module:
    """Adam on random minibatches drawn from `generator`; returns the model in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        idx = torch.randint(len(x), (batch_size,), generator=generator)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
