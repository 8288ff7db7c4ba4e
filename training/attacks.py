"""Projected gradient descent (Madry et al., 2018): the worst-case input within an eps-ball.

The JEM paper reports that JEM is more robust than a softmax classifier of the same architecture.
We measure it the standard way: maximise the cross-entropy of the true label by signed (L-inf) or
normalised (L2) gradient ascent from a random point in the ball, projecting back onto the ball and
onto the data range after every step. Inputs live in [-1, 1] (jem.preprocess), so eps is in those
units: L-inf eps 0.1 is 0.05 of the full range, i.e. ~13/255 in [0, 1] pixel units.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["Norm", "pgd_attack", "robust_accuracy"]

Norm = Literal["linf", "l2"]


def _flat_norm(t: Tensor) -> Tensor:
    """Per-sample L2 norm, shaped to broadcast against t."""
    norms: Tensor = t.flatten(1).norm(dim=1).clamp_min(1e-12)
    return norms.view(-1, *([1] * (t.dim() - 1)))


def _project(delta: Tensor, eps: float, norm: Norm) -> Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    # shrink only the deltas that left the ball; the ones inside stay where they are
    return delta * (eps / _flat_norm(delta)).clamp(max=1.0)


def _random_start(x: Tensor, eps: float, norm: Norm, generator: torch.Generator | None) -> Tensor:
    if norm == "linf":
        return (torch.rand(x.shape, generator=generator, dtype=x.dtype) * 2 - 1) * eps
    # uniform in the L2 ball: a random direction times radius eps * u^(1/d)
    direction = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    direction = direction / _flat_norm(direction)
    d = x[0].numel()
    u = torch.rand(x.shape[0], generator=generator, dtype=x.dtype)
    radius = eps * u.pow(1.0 / d)
    return direction * radius.view(-1, *([1] * (x.dim() - 1)))


def pgd_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    norm: Norm = "linf",
    steps: int = 20,
    step_size: float | None = None,
    clamp: tuple[float, float] = (-1.0, 1.0),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Adversarial examples for `model` (x -> logits): within `eps` of x in `norm`, inside `clamp`.

    The model is put in eval mode with parameter grads off and restored afterwards, like the SGLD
    sampler: an evaluation must leave no trace on the model it evaluates.
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    x = x.detach()
    if eps == 0:
        return x.clone()
    # Madry's rule of thumb: enough step length to cross the ball ~2.5 times over all steps
    alpha = step_size if step_size is not None else 2.5 * eps / steps
    was_training = model.training
    saved_flags = [p.requires_grad for p in model.parameters()]
    try:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        device = x.device
        delta = _random_start(x.cpu(), eps, norm, generator).to(device)
        delta = (x + delta).clamp(*clamp) - x
        with torch.enable_grad():
            for _ in range(steps):
                delta.requires_grad_(True)
                loss = nn.functional.cross_entropy(model(x + delta), y)
                (grad,) = torch.autograd.grad(loss, delta)
                with torch.no_grad():
                    step = grad.sign() if norm == "linf" else grad / _flat_norm(grad)
                    delta = _project(delta + alpha * step, eps, norm)
                    # clamping x + delta into the data range moves every pixel towards x (which
                    # is inside the range), so the result stays inside the eps-ball as well
                    delta = (x + delta).clamp(*clamp) - x
        return (x + delta).detach()
    finally:
        for p, flag in zip(model.parameters(), saved_flags, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)


@torch.no_grad()
def _accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    return float((model(x).argmax(dim=1) == y).float().mean())


def robust_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    epsilons: Sequence[float],
    *,
    norm: Norm = "linf",
    steps: int = 20,
    seed: int = 0,
    batch_size: int = 500,
) -> list[float]:
    """Accuracy under PGD for each eps (eps 0 = clean accuracy). Seeded: same seed, same curve."""
    was_training = model.training
    model.eval()
    try:
        accuracies = []
        for eps in epsilons:
            generator = torch.Generator().manual_seed(seed)
            correct = 0.0
            for start in range(0, len(x), batch_size):
                xb, yb = x[start : start + batch_size], y[start : start + batch_size]
                adv = pgd_attack(
                    model, xb, yb, eps=eps, norm=norm, steps=steps, generator=generator
                )
                correct += _accuracy(model, adv, yb) * len(xb)
            accuracies.append(correct / len(x))
        return accuracies
    finally:
        model.train(was_training)
