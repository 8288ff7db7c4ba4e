"""One Pillow image -> the model's uint8 pixels, as its `InputSpec` says. The only such path.

Training (image folders, OOD photo patches) and the service (uploads) both call `to_pixels`, so a
model is served exactly the pixels it was trained on: same colour conversion, same transparency
handling, same inversion, same resampling filter. This is the one module of `jem` that needs
Pillow; it reads no files (callers open them) and holds no state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from jem.preprocess import InputSpec

__all__ = ["RESAMPLE_FILTERS", "labelled_grid", "to_pixels"]

# the InputSpec's resampling names -> Pillow filters
RESAMPLE_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit (and 32-bit integer) greyscale to 8 bits by scaling: convert("L") would clip every
    value above 255 to white."""
    wide = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8), "L")


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )


def to_pixels(image: Image.Image, spec: InputSpec) -> np.ndarray[Any, Any]:
    """A decoded Pillow image (any size) -> uint8 (H, W, C) in the model's input spec.

    Order: wide integer modes scaled to 8 bits; transparent pixels composited onto
    `spec.background_rgb`; converted to `spec.color_mode`; inverted when `spec.invert` (before
    resizing); resized to (height, width) with `spec.resample`. Raises whatever Pillow raises
    for pixels it cannot convert (OSError, ValueError): callers map that to their own errors.
    """
    if image.mode.startswith("I;16") or image.mode == "I":
        image = _to_8bit(image)
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(
            Image.new("RGBA", rgba.size, (*spec.background_rgb, 255)), rgba
        )
    if image.mode != spec.color_mode:
        image = image.convert(spec.color_mode)
    if image.size == (spec.width, spec.height):
        # the common case (images at the model's size): invert in numpy, 5x cheaper than
        # ImageOps.invert's lookup table and the same values
        array = np.asarray(image, dtype=np.uint8)
        array = 255 - array if spec.invert else array.copy()
    else:
        if spec.invert:
            image = ImageOps.invert(image)
        image = image.resize((spec.width, spec.height), resample=RESAMPLE_FILTERS[spec.resample])
        array = np.array(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def labelled_grid(
    rows: Sequence[tuple[str, Sequence[Image.Image]]], *, min_cell: int = 32, pad: int = 2
) -> Image.Image:
    """One row per (label, images): the label on the left, the images upscaled (nearest) so a
    cell is >= `min_cell` px. Rows never wrap, so a row holds exactly one label's images."""
    rows = [(label, images) for label, images in rows if images]
    if not rows:
        raise ValueError("cannot make a grid of zero images")
    width, height = rows[0][1][0].size
    scale = max(1, -(-min_cell // max(1, min(width, height))))
    cell_w, cell_h = width * scale, height * scale
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max(int(measure.textlength(label, font=font)) for label, _ in rows) + 2 * pad
    cols = max(len(images) for _, images in rows)
    grid = Image.new(
        "RGB",
        (text_w + cols * (cell_w + pad) + pad, len(rows) * (cell_h + pad) + pad),
        (255, 255, 255),
    )
    draw = ImageDraw.Draw(grid)
    for r, (label, images) in enumerate(rows):
        top = pad + r * (cell_h + pad)
        draw.text((pad, top + cell_h // 2), label, fill=(0, 0, 0), font=font, anchor="lm")
        for c, image in enumerate(images):
            cell = image.convert("RGB").resize((cell_w, cell_h), Image.Resampling.NEAREST)
            grid.paste(cell, (text_w + c * (cell_w + pad), top))
    return grid
