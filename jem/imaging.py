"""One Pillow image -> the model's uint8 pixels, as its `InputSpec` says. The only such path.

Training (image folders, OOD photo patches) and the service (uploads) both call `to_pixels`, so a
model is served exactly the pixels it was trained on: same colour conversion, same transparency
handling, same inversion, same resampling filter. This is the one module of `jem` that needs
Pillow; it reads no files (callers open them) and holds no state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageOps

from jem.preprocess import InputSpec

__all__ = ["RESAMPLE_FILTERS", "to_pixels"]

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
