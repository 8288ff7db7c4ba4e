"""The SGLD loop as the official JEM code writes it: the yardstick for `jem.sgld_sample`.

This mirrors `sample_q` in wgrathwohl/JEM's `train_wrn_ebm.py` (Grathwohl et al. 2020), minus
the replay buffer bookkeeping:

    f.eval()
    x_k = t.autograd.Variable(init_sample, requires_grad=True)
    for k in range(n_steps):
        f_prime = t.autograd.grad(f(x_k, y=y).sum(), [x_k], retain_graph=True)[0]
        x_k.data += args.sgld_lr * f_prime + args.sgld_std * t.randn_like(x_k)
    f.train()

where `f(x)` is logsumexp of the logits (= -E(x)), so the step climbs log p(x). As in the
original, the parameters keep requires_grad=True throughout (autograd records the graph into the
weights too), each step keeps its graph (`retain_graph=True`), the update goes through `.data`,
there is no clamp, and the model is left in train mode afterwards. It is here to be timed, not used.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["backward_sgld", "reference_sgld"]


def reference_sgld(
    f: nn.Module,
    init_sample: Tensor,
    n_steps: int,
    sgld_lr: float = 1.0,
    sgld_std: float = 0.01,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    f.requires_grad_(True)  # as during training: the official loop never turns these off
    f.eval()
    x_k = init_sample.clone().requires_grad_(True)
    for _ in range(n_steps):
        f_prime = torch.autograd.grad(f(x_k).logsumexp(1).sum(), [x_k], retain_graph=True)[0]
        noise = torch.randn(x_k.shape, generator=generator, dtype=x_k.dtype)
        x_k.data += sgld_lr * f_prime + sgld_std * noise
    f.train()  # the official code's habit: the model is left in train mode
    return x_k.detach()


def backward_sgld(
    f: nn.Module,
    init_sample: Tensor,
    n_steps: int,
    sgld_lr: float = 1.0,
    sgld_std: float = 0.01,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The other common way: `.backward()` and read `x.grad`, parameters requiring grad.

    Unlike `autograd.grad(..., [x])`, `.backward()` computes (and accumulates) every parameter's
    gradient too: the work a sampler saves by asking for the input gradient only.
    """
    f.requires_grad_(True)
    x = init_sample.clone()
    for _ in range(n_steps):
        x.requires_grad_(True)
        f(x).logsumexp(1).sum().backward()
        assert x.grad is not None
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = (x + sgld_lr * x.grad + sgld_std * noise).detach()
    f.zero_grad(set_to_none=True)
    return x
