"""Class-conditional samples from the trained model, and a PNG grid to look at them."""

from __future__ import annotations

import io

import torch
from PIL import Image
from torch import Tensor

from jem import JEM, ClassGaussianInit, SGLDConfig, UniformInit, sgld_sample, tensor_to_uint8

__all__ = ["class_conditional_samples", "image_grid_png"]


def class_conditional_samples(
    model: JEM,
    init: UniformInit | ClassGaussianInit,
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


def image_grid_png(x: Tensor, rows: int, scale: int = 4, pad: int = 1) -> bytes:
    """(N, C, H, W) in [-1, 1] -> PNG bytes, ``rows`` rows filled column by column.

    With samples ordered class by class and ``rows = per_class``, each column is one class.
    """
    images = tensor_to_uint8(x)  # (N, H, W, C)
    n, h, w, c = images.shape
    cols = -(-n // rows)
    cell_h, cell_w = h * scale + pad, w * scale + pad
    canvas = torch.full((rows * cell_h + pad, cols * cell_w + pad, c), 128, dtype=torch.uint8)
    for i in range(n):
        r, col = i % rows, i // rows
        big = images[i].repeat_interleave(scale, 0).repeat_interleave(scale, 1)
        top, left = pad + r * cell_h, pad + col * cell_w
        canvas[top : top + h * scale, left : left + w * scale] = big
    array = canvas.numpy()
    image = Image.fromarray(array[:, :, 0] if c == 1 else array, "L" if c == 1 else "RGB")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
