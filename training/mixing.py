"""Mixup and CutMix of a training batch, for the softmax classifier (the baseline) only.

Mixup (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization") trains on convex
combinations of two images and of their targets; CutMix (Yun et al. 2019, "CutMix:
Regularization Strategy to Train Strong Classifiers with Localizable Features") pastes a box of
one image into another and mixes the targets by the box's area. Both are batch-level, as the
papers' reference code and timm's ``Mixup(mode="batch")``: one mixing weight per batch, the
partner of image i is image ``perm[i]`` of the same batch.

The draws are a pure function of (seed, rank, step), like the batch order (training/batches.py):
a resumed run mixes exactly as an uninterrupted one, and the trainer's own generators
(augmentation, data noise, SGLD) draw the same numbers with mixing on or off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Mixed", "mix_batch", "mixed_cross_entropy"]

_STREAM = 0x6D6978  # "mix": keeps these draws apart from any other (seed, step) stream


@dataclass(frozen=True)
class Mixed:
    """A mixed batch: ``x`` (B, C, H, W) is ``lam`` of each image and ``1 - lam`` of image
    ``perm[i]`` (by pixel weight for mixup, by area for CutMix)."""

    x: Tensor
    perm: Tensor  # (B,) int64
    lam: float  # in [0, 1]


def mix_batch(
    x: Tensor, *, mixup_alpha: float, cutmix_alpha: float, seed: int, step: int, rank: int = 0
) -> Mixed:
    """Mix ``x`` (B, C, H, W) with a permutation of itself.

    ``mixup_alpha > 0``: ``lam ~ Beta(a, a)``, ``x' = lam * x + (1 - lam) * x[perm]``.
    ``cutmix_alpha > 0``: ``lam ~ Beta(a, a)``, a box of area ``(1 - lam) * H * W`` centred
    uniformly (clipped at the borders, as the paper's code) is copied from ``x[perm]``, and
    ``lam`` is corrected to the kept area. At most one of the two may be > 0 (``ValueError``);
    both 0 returns ``x`` itself with ``lam = 1``.
    """
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise ValueError("mixup_alpha and cutmix_alpha must be >= 0")
    if mixup_alpha > 0 and cutmix_alpha > 0:
        raise ValueError("set one of mixup_alpha and cutmix_alpha, not both")
    b = x.shape[0]
    if mixup_alpha == 0 and cutmix_alpha == 0:
        return Mixed(x, torch.arange(b, device=x.device), 1.0)
    rng = np.random.default_rng([seed, rank, step, _STREAM])
    lam = float(rng.beta(mixup_alpha or cutmix_alpha, mixup_alpha or cutmix_alpha))
    perm = torch.from_numpy(rng.permutation(b)).to(x.device)
    if mixup_alpha > 0:
        return Mixed(lam * x + (1 - lam) * x[perm], perm, lam)
    h, w = x.shape[-2:]
    cut = math.sqrt(1 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    top, bottom = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    left, right = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    out = x.clone()
    out[..., top:bottom, left:right] = x[perm][..., top:bottom, left:right]
    kept = 1 - (bottom - top) * (right - left) / (h * w)
    return Mixed(out, perm, kept)


def mixed_cross_entropy(
    logits: Tensor, y: Tensor, mixed: Mixed, label_smoothing: float = 0.0
) -> Tensor:
    """``lam * CE(logits, y) + (1 - lam) * CE(logits, y[perm])``: the cross-entropy against the
    mixed target (each term with PyTorch's ``label_smoothing``). logits (B, C), y (B,)."""
    ce = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    if mixed.lam == 1.0:
        return ce
    other = F.cross_entropy(logits, y[mixed.perm], label_smoothing=label_smoothing)
    return mixed.lam * ce + (1 - mixed.lam) * other
