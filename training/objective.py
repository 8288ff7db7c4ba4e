"""The JEM objective: a classifier's cross-entropy plus a contrastive estimate of grad log p(x).

With E(x) = -logsumexp f(x), the gradient of log p(x) wrt the parameters is

    grad log p(x) = -grad E(x) + E_{x' ~ p}[grad E(x')]

and the second term is estimated with SGLD samples x' from the model itself. Minimising
    E(x_data) - E(x_sampled)
therefore follows the maximum-likelihood gradient: push data energies down and sample energies up.
``px_weight = 0`` leaves plain cross-entropy, the matched softmax baseline.

The optional L2 term ``energy_reg * (E_data^2 + E_sampled^2)`` (Du & Mordatch 2019) keeps both
energies near zero; without it the two can drift together to huge magnitudes while their
difference stays small, which is one of the silent ways JEM training diverges.

The optional ``grad_penalty * ||grad_x E(x_data)||^2`` is the first term of the score-matching
objective (Hyvarinen 2005): it asks the data to sit where the density is flat, which is what the
JEM paper's "approximate mass" OOD score (a small input gradient means in-distribution) assumes.
Maximum likelihood alone only asks the data to have low energy; on the digits it leaves gradients
at the data as large as on flat plateaus far from them (docs/training.md, recipe search).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from jem import energy_from_logits
from training.mixing import Mixed, mixed_cross_entropy

__all__ = ["LossParts", "jem_loss"]


@dataclass(frozen=True)
class LossParts:
    """The loss to backpropagate and detached floats for logging and the divergence guard."""

    loss: Tensor
    ce: float
    acc: float
    gap: float  # mean E(x_data) - mean E(x_sampled); negative once data has the lower energy
    energy_data: float
    energy_sample: float
    sample_min: float
    sample_max: float
    max_abs_energy: float
    data_grad_norm: float = 0.0  # mean ||grad_x E(x_data)||, measured when grad_penalty > 0

    def summary(self, generative: bool) -> str:
        """One line for the progress bar: loss and accuracy, the energies and the samples' range
        when ``generative``, and the data gradient's norm when it was measured."""
        text = f"loss {float(self.loss.detach()):.3f} acc {self.acc:.3f}"
        if generative:
            text += (
                f" gap {self.gap:+.3f} E {self.energy_data:.2f}"
                f" x[{self.sample_min:.2f},{self.sample_max:.2f}]"
            )
        if self.data_grad_norm:
            text += f" |dE/dx| {self.data_grad_norm:.2f}"
        return text


def jem_loss(
    logits: Tensor,
    y: Tensor,
    logits_sampled: Tensor | None = None,
    x_sampled: Tensor | None = None,
    *,
    px_weight: float = 1.0,
    energy_reg: float = 0.0,
    x_data: Tensor | None = None,
    grad_penalty: float = 0.0,
    label_smoothing: float = 0.0,
    mixed: Mixed | None = None,
) -> LossParts:
    """CE + px_weight * mean(E_data - E_sampled) + energy_reg * mean(E^2) + grad_penalty * |dE/dx|².

    ``logits`` are of the (noised) data batch; ``logits_sampled`` of the SGLD samples (None, or
    px_weight == 0, for the baseline). ``grad_penalty > 0`` needs ``x_data``, the inputs that
    produced ``logits``, with ``requires_grad`` set before the forward pass.
    ``label_smoothing`` in [0, 1) is PyTorch's: the cross-entropy's target puts
    ``1 - label_smoothing + label_smoothing / C`` on the label and ``label_smoothing / C`` on
    each other class (Szegedy et al. 2016); the logged ``ce`` is that smoothed loss.
    ``mixed`` (the baseline only: :mod:`training.mixing`) says the data batch was mixed: the
    cross-entropy is against the mixed target, and ``acc`` against each row's larger share.
    """
    if mixed is None:
        ce = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
    else:
        ce = mixed_cross_entropy(logits.float(), y, mixed, label_smoothing)
        y = y if mixed.lam >= 0.5 else y[mixed.perm]
    acc = (logits.argmax(dim=1) == y).float().mean()
    loss = ce
    e_data = energy_from_logits(logits.float())
    stats = {
        "gap": 0.0,
        "energy_sample": 0.0,
        "sample_min": 0.0,
        "sample_max": 0.0,
        "data_grad_norm": 0.0,
    }
    max_abs = e_data.detach().abs().max()
    if logits_sampled is not None and px_weight > 0:
        e_sample = energy_from_logits(logits_sampled.float())
        gap = e_data.mean() - e_sample.mean()
        loss = loss + px_weight * gap
        if energy_reg > 0:
            if len(e_data) == len(e_sample):
                loss = loss + energy_reg * (e_data.pow(2) + e_sample.pow(2)).mean()
            else:  # sgld_batch_size != batch_size: the two means, each over its own batch
                loss = loss + energy_reg * (e_data.pow(2).mean() + e_sample.pow(2).mean())
        max_abs = torch.maximum(max_abs, e_sample.detach().abs().max())
        stats["gap"] = float(gap.detach())
        stats["energy_sample"] = float(e_sample.detach().mean())
        if x_sampled is not None:
            stats["sample_min"] = float(x_sampled.min())
            stats["sample_max"] = float(x_sampled.max())
    if grad_penalty > 0:
        if x_data is None or not x_data.requires_grad:
            raise ValueError("grad_penalty > 0 needs x_data with requires_grad=True")
        # create_graph: the penalty is itself differentiated w.r.t. the parameters
        (grad_x,) = torch.autograd.grad(e_data.sum(), x_data, create_graph=True)
        sq_norm = grad_x.flatten(1).pow(2).sum(dim=1)
        loss = loss + grad_penalty * sq_norm.mean()
        stats["data_grad_norm"] = float(sq_norm.detach().sqrt().mean())
    return LossParts(
        loss=loss,
        ce=float(ce.detach()),
        acc=float(acc),
        energy_data=float(e_data.detach().mean()),
        max_abs_energy=float(max_abs),
        **stats,
    )
