"""An exponential moving average (EMA) of the weights: what a run evaluates, checkpoints and ships.

With ``ema_decay`` = d > 0, after the n-th optimiser step ``w_ema <- d_n * w_ema + (1 - d_n) * w``
with ``d_n = min(d, (1 + n) / (10 + n))`` (the first step copies ``w``), kept by PyTorch's
:class:`torch.optim.swa_utils.AveragedModel`. Averaging the last ~1 / (1 - d) iterates smooths
out the noise of the last steps of SGD/Adam (Polyak & Juditsky 1992; the "EMA" of most image
classifiers' training recipes). The warm-up ``d_n`` is TensorFlow's
``tf.train.ExponentialMovingAverage(decay, num_updates)``: without it the average of a short run
keeps a share d^n of the random initial weights (0.999 over 3,000 steps: 5%) and reads near
chance for its first thousand steps. Training itself (gradients, SGLD chains, the health
figures) runs on the live weights; validation, checkpoints' weights, the final version and its
samples are the average's. A checkpoint keeps the live weights in its training state
(``live.<name>`` tensors) so a resumed run continues both, bit for bit on CPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

__all__ = ["LIVE_PREFIX", "WeightAverage", "live_tensors", "live_weights"]

_Tensors = tuple[Tensor, ...] | list[Tensor]

LIVE_PREFIX = "live."  # training-state tensors holding the live weights when the EMA is shipped


class WeightAverage:
    """The EMA of ``model``'s parameters and buffers; ``module`` is a copy of ``model`` holding it.

    ``decay`` in (0, 1): the weight of the average so far at each update.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self._averaged = AveragedModel(model, multi_avg_fn=self._average, use_buffers=True)
        self._averaged.requires_grad_(False)

    def decay_at(self, updates: int) -> float:
        """The decay applied at the update after ``updates`` updates (TensorFlow's warm-up)."""
        return min(self.decay, (1 + updates) / (10 + updates))

    @torch.no_grad()
    def _average(self, averaged: _Tensors, current: _Tensors, updates: Tensor | int) -> None:
        # the count kept on the CPU (``updates`` is its copy on the weights' device: reading
        # that would synchronise with a GPU every step)
        weight = 1.0 - self.decay_at(self.updates)
        for mine, theirs in zip(averaged, current, strict=True):
            mine.lerp_(theirs, weight)

    @property
    def module(self) -> nn.Module:
        """The averaged network (the same class as the model averaged)."""
        return self._averaged.module

    @property
    def updates(self) -> int:
        """How many optimiser steps have been averaged in so far."""
        return int(self._averaged.n_averaged)

    def update(self, model: nn.Module) -> None:
        """Average in ``model``'s current weights (call after every optimiser step)."""
        self._averaged.update_parameters(model)

    def state(self) -> dict[str, Any]:
        """The averaged weights and the update count (for rollback snapshots)."""
        return {
            "weights": {k: v.detach().clone() for k, v in self.module.state_dict().items()},
            "updates": self.updates,
        }

    def load(self, weights: dict[str, Tensor], updates: int) -> None:
        """Put back averaged ``weights`` after ``updates`` updates (a snapshot or checkpoint)."""
        self.module.load_state_dict(weights)
        self._averaged.n_averaged.fill_(int(updates))

    def restart_from(self, model: nn.Module) -> None:
        """Start the average afresh at ``model``'s weights (a resumed run that had no EMA)."""
        self.load(model.state_dict(), 1)


def live_weights(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """The live weights a checkpoint's training state carries, or {} when it has none."""
    return {k[len(LIVE_PREFIX) :]: v for k, v in tensors.items() if k.startswith(LIVE_PREFIX)}


def live_tensors(model: nn.Module) -> dict[str, Tensor]:
    """``model``'s weights as training-state tensors (CPU copies)."""
    return {
        LIVE_PREFIX + k: v.detach().to("cpu").contiguous().clone()
        for k, v in model.state_dict().items()
    }
