"""A context in which a model is evaluated for input gradients and left exactly as found."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["frozen_for_input_grads"]


@contextmanager
def frozen_for_input_grads(model: object) -> Iterator[None]:
    """Eval mode, parameters' requires_grad off, autograd on; restored afterwards, even on errors.

    Turning parameter grads off means autograd builds no graph into the weights (cheaper), and a
    caller's `.grad` can never be touched. Each submodule's own train/eval flag and each
    parameter's own requires_grad are restored, not just the top-level ones: a half-frozen
    model stays half-frozen. `inference_mode(False)` lets this run inside a caller's
    inference_mode block (a service), where autograd would otherwise be unavailable.
    """
    modules = list(model.modules()) if isinstance(model, nn.Module) else []
    params = list(model.parameters()) if isinstance(model, nn.Module) else []
    modes = [m.training for m in modules]
    requires = [p.requires_grad for p in params]
    try:
        for m in modules:
            m.training = False
        for p in params:
            p.requires_grad_(False)
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.training = mode
        for p, req in zip(params, requires, strict=True):
            p.requires_grad_(req)
