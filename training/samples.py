"""Class-conditional samples from the trained model, and a PNG grid to look at them."""

from __future__ import annotations

import io
from collections.abc import Sequence

import torch
from PIL import Image
from torch import Tensor

from jem import (
    JEM,
    ClassGaussianInit,
    MixedInit,
    SGLDConfig,
    UniformInit,
    sgld_sample,
    tensor_to_uint8,
)
from jem.imaging import labelled_grid

__all__ = ["class_conditional_samples", "class_grid_png"]


def class_conditional_samples(
    model: JEM,
    init: UniformInit | ClassGaussianInit | MixedInit,
    shape: tuple[int, ...],
    config: SGLDConfig,
    per_class: int = 10,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """``per_class`` chains per class from ``init``, run ``config.steps`` on E(x, y): (x, y)."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(model.num_classes).repeat_interleave(per_class)
    x0 = init.sample(len(y), shape, y, generator)
    x = sgld_sample(model, x0.to(device), config, y.to(device), generator=generator)
    return x.cpu(), y


def class_grid_png(x: Tensor, y: Tensor, class_names: Sequence[str], per_class: int = 10) -> bytes:
    """(N, C, H, W) samples in [-1, 1] with their classes (N,) -> PNG bytes: one row per class,
    labelled with its name, up to ``per_class`` samples each."""
    images = tensor_to_uint8(x).numpy()  # (N, H, W, C)
    rows = []
    for k, name in enumerate(class_names):
        index = torch.nonzero(y == k)[:per_class, 0].tolist()
        cells = [images[i] for i in index]
        rows.append((name, [Image.fromarray(c[:, :, 0] if c.shape[2] == 1 else c) for c in cells]))
    out = io.BytesIO()
    labelled_grid(rows).save(out, format="PNG")
    return out.getvalue()
