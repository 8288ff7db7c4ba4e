"""Out-of-distribution scores, one convention: higher = more likely out-of-distribution.

- energy:      E(x) = -logsumexp f(x). JEM models p(x) ∝ exp(-E(x)), so unlikely inputs have
               high energy.
- grad_norm:   ||grad_x log p(x)||_2 = ||grad_x E(x)||_2, the JEM paper's "approximate mass":
               training data sit where the density is high *and flat* (local maxima), while an
               input off the data manifold sits on a slope.
- max_softmax: 1 - max_y p(y|x), the classifier baseline (Hendrycks & Gimpel 2017).

Every score is computed in eval mode with the model's mode restored afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from jem._frozen import frozen_for_input_grads
from jem.model import JEM, energy_from_logits

__all__ = [
    "OOD_SCORES",
    "energy_score",
    "grad_norm_score",
    "max_softmax_from_logits",
    "max_softmax_score",
    "ood_scores",
]

OOD_SCORES = ("energy", "grad_norm", "max_softmax")


def _logits(model: JEM, x: Tensor) -> Tensor:
    with frozen_for_input_grads(model), torch.no_grad():
        logits: Tensor = model(x)
    return logits


def max_softmax_from_logits(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """1 - max_y softmax(logits / T)_y for logits (B, K), shape (B,), without cancellation.

    Computed as s / (1 + s), s = sum over the other classes of exp(z_y - z_max), z = logits / T,
    which equals 1 - max p but keeps its precision where max p rounds to 1 (in float32, once the
    top logit leads by about 17 / T): `1 - p` is then exactly 0 for every confident image, and a
    threshold fitted on such scores (0) would flag any image that scores above 0. Here a score
    reaches 0 only once every other class underflows (a lead of about 100 / T in float32).
    Raises ValueError for T <= 0.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = logits / temperature
    others = torch.exp(z - z.amax(dim=-1, keepdim=True))
    others = others.scatter(-1, z.argmax(dim=-1, keepdim=True), 0.0)  # a tied class stays in
    s = others.sum(dim=-1)
    return s / (1.0 + s)


def energy_score(model: JEM, x: Tensor) -> Tensor:
    """E(x) = -logsumexp f(x), shape (B,)."""
    return energy_from_logits(_logits(model, x))


def grad_norm_score(model: JEM, x: Tensor) -> Tensor:
    """||grad_x E(x)||_2 per sample, shape (B,), in one batched backward pass.

    The summed energy's gradient w.r.t. x is each sample's own gradient because samples do not
    interact (no batch norm; eval mode), so one autograd call gives all B norms.
    """
    with frozen_for_input_grads(model):
        xg = x.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model.energy(xg).sum(), xg)
    norms: Tensor = torch.linalg.vector_norm(grad.flatten(1), dim=1)
    return norms.detach()


def max_softmax_score(model: JEM, x: Tensor, temperature: float = 1.0) -> Tensor:
    """1 - max_y softmax(f(x) / T)_y, shape (B,)."""
    return max_softmax_from_logits(_logits(model, x), temperature)


def ood_scores(
    model: JEM, x: Tensor, names: Sequence[str] = OOD_SCORES, temperature: float = 1.0
) -> dict[str, Tensor]:
    """The named scores for a batch, sharing one forward pass between energy and max_softmax."""
    unknown = [n for n in names if n not in OOD_SCORES]
    if unknown:
        raise ValueError(f"unknown OOD score(s) {unknown}; known scores: {', '.join(OOD_SCORES)}")
    scores: dict[str, Tensor] = {}
    if "energy" in names or "max_softmax" in names:
        logits = _logits(model, x)
        if "energy" in names:
            scores["energy"] = energy_from_logits(logits)
        if "max_softmax" in names:
            scores["max_softmax"] = max_softmax_from_logits(logits, temperature)
    if "grad_norm" in names:
        scores["grad_norm"] = grad_norm_score(model, x)
    return {n: scores[n] for n in names}
