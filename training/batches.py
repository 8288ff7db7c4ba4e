"""Batch order, augmentation and data noise: pure functions of (seed, step) and one generator.

The order in which training examples are visited depends only on the run's seed and the step,
never on how many steps a process has already run: a run resumed at step s draws exactly the
batches an uninterrupted run would have drawn from step s on. Each epoch is a fresh permutation
seeded by (seed, epoch); a global batch of ``batch_size * world_size`` consecutive positions is
cut into one shard per rank.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["augment", "batch_indices", "derive_seed", "random_erase"]


def derive_seed(seed: int, *parts: int) -> int:
    """Independent, reproducible seeds for each (rank, attempt, stream)."""
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


class _Permutations:
    def __init__(self, seed: int, n: int) -> None:
        self.seed, self.n = seed, n
        self._cache: dict[int, np.ndarray] = {}

    def __call__(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            if len(self._cache) > 4:
                self._cache.clear()
            rng = np.random.default_rng([self.seed, epoch])
            self._cache[epoch] = rng.permutation(self.n)
        return self._cache[epoch]


_PERMS: dict[tuple[int, int], _Permutations] = {}


def batch_indices(
    seed: int, step: int, n: int, batch_size: int, rank: int = 0, world_size: int = 1
) -> Tensor:
    """Indices into the training set for this rank's share of global batch ``step``."""
    perms = _PERMS.setdefault((seed, n), _Permutations(seed, n))
    start = (step * world_size + rank) * batch_size
    positions = np.arange(start, start + batch_size)
    epochs, offsets = np.divmod(positions, n)
    out = np.empty(batch_size, dtype=np.int64)
    for epoch in np.unique(epochs):
        rows = epochs == epoch
        out[rows] = perms(int(epoch))[offsets[rows]]
    return torch.from_numpy(out)


def augment(x: Tensor, mode: str, generator: torch.Generator, pad: int = 4) -> Tensor:
    """``crop``: random translation by up to ``pad`` pixels (reflect padding), as torchvision's
    RandomCrop(padding=pad); ``crop_flip`` adds a horizontal flip with probability 1/2;
    ``affine_flip`` is :func:`random_affine` (rotation, scale, translation) then the flip;
    ``affine_flip_jitter`` then changes each image's brightness and contrast
    (:func:`brightness_contrast`; inputs in [-1, 1]); ``affine_flip_erase`` then erases a random
    rectangle of each image with probability 1/2 (:func:`random_erase`).

    The offsets and flips are drawn from ``generator`` (on its own device, a few numbers) and
    applied on ``x``'s device in one gather: no per-image kernels, no host round trip.
    """
    if mode == "none":
        return x
    if mode == "affine_flip":
        return _flip(random_affine(x, generator), generator)
    if mode == "affine_flip_erase":
        return random_erase(_flip(random_affine(x, generator), generator), generator)
    if mode == "affine_flip_jitter":
        return brightness_contrast(_flip(random_affine(x, generator), generator), generator)
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    shifts = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator).to(x.device)
    rows = (shifts[:, 0, None] + torch.arange(h, device=x.device)).view(b, 1, h, 1)
    cols = (shifts[:, 1, None] + torch.arange(w, device=x.device)).view(b, 1, 1, w)
    batch = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    channel = torch.arange(c, device=x.device).view(1, c, 1, 1)
    out = padded[batch, channel, rows, cols]
    return _flip(out, generator) if mode == "crop_flip" else out


def _flip(x: Tensor, generator: torch.Generator) -> Tensor:
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def random_affine(
    x: Tensor,
    generator: torch.Generator,
    degrees: float = 15.0,
    scale: tuple[float, float] = (0.8, 1.2),
    translate: float = 0.125,
) -> Tensor:
    """Per-image random rotation, zoom and shift, as torchvision's RandomAffine(degrees,
    translate=(t, t), scale): angle uniform in [-degrees, degrees], zoom uniform in ``scale``
    (> 1 enlarges), shift uniform up to ``translate`` of the width/height.

    x: (B, C, H, W). Bilinear resampling; pixels that come from outside the image repeat its
    border (``padding_mode="border"``), so a glyph on a plain background stays on that
    background. No colour change: colour carries class information in the emoji set.
    """
    b = x.shape[0]
    u = torch.rand(b, 4, generator=generator, dtype=torch.float64) * 2 - 1  # (B, 4) in [-1, 1]
    angle = u[:, 0] * math.radians(degrees)
    zoom = scale[0] + (u[:, 1] + 1) / 2 * (scale[1] - scale[0])
    # theta maps output coordinates ([-1, 1] across the image) to input ones: the inverse map
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    shift = u[:, 2:] * 2 * translate
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    ).to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# ITU-R 601 luma as torchvision's rgb_to_grayscale writes it: the grey contrast is scaled about
LUMA = (0.2989, 0.587, 0.114)


def brightness_contrast(x: Tensor, generator: torch.Generator, strength: float = 0.2) -> Tensor:
    """Per-image brightness then contrast change, as torchvision's ``ColorJitter(brightness=s,
    contrast=s)`` in a fixed order: on pixels in [0, 1], ``x * b`` then ``(x - m) * c + m`` with
    m the image's mean grey level, each clamped to [0, 1]; b and c uniform in [1 - s, 1 + s].

    x: (B, C, H, W) in [-1, 1] (the model units of ``jem.uint8_to_tensor``); C 1 or 3. Hue and
    saturation are left alone: colour carries class information in the emoji set (the yellow
    faces of ``smileys-emotion``), while lighting does not.
    """
    b, c = x.shape[:2]
    u = torch.rand(b, 2, generator=generator, dtype=torch.float64) * 2 - 1  # (B, 2) in [-1, 1]
    factors = (1 + strength * u).to(device=x.device, dtype=x.dtype).view(b, 2, 1, 1, 1)
    unit = ((x + 1) / 2 * factors[:, 0]).clamp(0, 1)
    if c == 3:
        luma = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        grey = (unit * luma).sum(1, keepdim=True)
    else:
        grey = unit.mean(1, keepdim=True)
    mean = grey.mean((1, 2, 3), keepdim=True)
    unit = ((unit - mean) * factors[:, 1] + mean).clamp(0, 1)
    return unit * 2 - 1


def random_erase(
    x: Tensor,
    generator: torch.Generator,
    p: float = 0.5,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
) -> Tensor:
    """Random erasing (Zhong et al. 2020, the paper's defaults; torchvision's RandomErasing with
    ``value="random"``): with probability ``p`` per image, a rectangle of area uniform in
    ``scale`` of the image and aspect ratio (h / w) log-uniform in ``ratio`` is filled with
    uniform noise in [-1, 1] (the model units). Where torchvision retries a rectangle that does
    not fit, its sides are clipped to the image here (one draw per image, batched).

    x: (B, C, H, W); returns a new tensor, x itself untouched.
    """
    b, _, h, w = x.shape
    u = torch.rand(b, 5, generator=generator, dtype=torch.float64)  # (B, 5) in [0, 1)
    area = (scale[0] + u[:, 0] * (scale[1] - scale[0])) * h * w
    log_r = math.log(ratio[0]) + u[:, 1] * (math.log(ratio[1]) - math.log(ratio[0]))
    eh = torch.sqrt(area * torch.exp(log_r)).round().clamp(1, h).long()
    ew = torch.sqrt(area / torch.exp(log_r)).round().clamp(1, w).long()
    top = (u[:, 2] * (h - eh + 1)).floor().long()
    left = (u[:, 3] * (w - ew + 1)).floor().long()
    on = u[:, 4] < p
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    inside = (
        (rows >= top.view(b, 1, 1))
        & (rows < (top + eh).view(b, 1, 1))
        & (cols >= left.view(b, 1, 1))
        & (cols < (left + ew).view(b, 1, 1))
        & on.view(b, 1, 1)
    )  # (B, H, W)
    noise = torch.rand(x.shape, generator=generator).to(device=x.device, dtype=x.dtype) * 2 - 1
    return torch.where(inside.to(x.device).unsqueeze(1), noise, x)
