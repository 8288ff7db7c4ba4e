"""Augmentation for 8x8 digits that covers what input normalisation cannot: rotation and slant.

The service's `digits-v1` normalisation (jem/normalize.py) removes what a normalised data set
never varies: position, size, polarity, background, blur and stroke width. It cannot undo a
digit written at an angle or in a slanted hand, and scikit-learn's 1078 training digits barely
vary there. This re-draws each training digit at the bitmap resolution the data set was made
at (32x32), rotated (up to +-12 degrees), sheared, stretched and with its stroke thickened or
thinned by a pixel, then puts it back through the data set's own steps as digits-v1 does:
crop to the ink's box, fit it aspect-preserving into the 32x32 frame, centre by box, binarise,
count 4x4 blocks (0..16). Batched torch; draws only from the trainer's generator (resumable).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["augment_digits"]

MAX_DEGREES = 12.0
MAX_SHEAR = 0.2
MAX_STRETCH = 0.15
KEEP_FRACTION = 0.5
_BLOCK = 4  # bitmap pixels per model pixel (optdigits: 32x32 -> 8x8)


def _uniform(n: int, bound: float, generator: torch.Generator) -> Tensor:
    return (torch.rand(n, generator=generator) * 2.0 - 1.0) * bound


def _fit_boxes(drawn: Tensor, height: int, width: int) -> Tensor:
    """(B, 1, H', W') ink coverage -> (B, 1, height, width): each digit's ink box (coverage above
    a quarter) scaled aspect-preserving until it fills the frame, centred by box, as
    jem.normalize does for uploads. One batched resampling, no per-image loop."""
    b, _, hh, ww = drawn.shape
    ink = drawn[:, 0] > 0.25
    rows, cols = ink.any(dim=2).float(), ink.any(dim=1).float()
    top = rows.argmax(dim=1).float()
    bottom = (hh - 1) - rows.flip(1).argmax(dim=1).float()
    left = cols.argmax(dim=1).float()
    right = (ww - 1) - cols.flip(1).argmax(dim=1).float()
    box_h, box_w = bottom - top + 1, right - left + 1
    scale = torch.minimum(height / box_h, width / box_w)  # frame pixels per canvas pixel
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = width / scale / ww
    theta[:, 1, 1] = height / scale / hh
    theta[:, 0, 2] = (left + right + 1) / ww - 1
    theta[:, 1, 2] = (top + bottom + 1) / hh - 1
    grid = F.affine_grid(theta, [b, 1, height, width], align_corners=False)
    return F.grid_sample(drawn, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def augment_digits(x: Tensor, generator: torch.Generator) -> Tensor:
    """x: (B, 1, H, W) in [-1, 1] (block counts / 16 mapped to [-1, 1]) -> the same shape,
    each digit rotated, sheared, stretched, stroke-changed and re-normalised."""
    b, _, h, w = x.shape
    size = (h * _BLOCK, w * _BLOCK)
    coverage = F.interpolate((x + 1.0) / 2.0, size=size, mode="bilinear", align_corners=False)
    margin = size[0] // 4
    canvas = F.pad(coverage, (margin, margin, margin, margin))
    angle = _uniform(b, math.radians(MAX_DEGREES), generator)
    shear = _uniform(b, MAX_SHEAR, generator)
    stretch = 1.0 + _uniform(b, MAX_STRETCH, generator)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # output -> input sampling matrix: rotation @ shear @ horizontal stretch
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = cos * stretch
    theta[:, 0, 1] = cos * shear - sin
    theta[:, 1, 0] = sin * stretch
    theta[:, 1, 1] = sin * shear + cos
    grid = F.affine_grid(theta, list(canvas.shape), align_corners=False)
    drawn = F.grid_sample(canvas, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # stroke width: one pixel thinner, as is, or one pixel thicker at the 32x32 bitmap scale
    stroke = torch.randint(-1, 2, (b,), generator=generator)[:, None, None, None]
    thick = F.max_pool2d(drawn, 3, stride=1, padding=1)
    thin = -F.max_pool2d(-drawn, 3, stride=1, padding=1)
    drawn = torch.where(stroke > 0, thick, torch.where(stroke < 0, thin, drawn))
    drawn = torch.where(drawn.amax(dim=(1, 2, 3), keepdim=True) > 0.25, drawn, canvas)
    fitted = _fit_boxes(drawn, *size).flatten(1)
    # binarise as the data set's bitmaps are, keeping each digit's ink mass: the threshold is
    # the coverage quantile that leaves as many pixels on as the (re-fitted) digit has ink
    on = (fitted.mean(dim=1, keepdim=True).clamp(0.05, 0.95) * fitted.shape[1]).long()
    threshold = fitted.sort(dim=1, descending=True).values.gather(1, on)
    bitmaps = (fitted > threshold).float().view(b, 1, *size)
    augmented = F.avg_pool2d(bitmaps, _BLOCK) * 2.0 - 1.0
    # half of each batch stays as the data set made it: the clean digits keep their accuracy
    keep = (torch.rand(b, generator=generator) < KEEP_FRACTION)[:, None, None, None]
    return torch.where(keep, x, augmented)
