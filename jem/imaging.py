"""One Pillow image -> the model's uint8 pixels, as its `InputSpec` says. The only such path.

Training (image folders, OOD photo patches) and the service (uploads) both call `to_pixels`, so a
model is served exactly the pixels it was trained on: same storage handling, same transparency
handling, same normalisation, same inversion, same resampling filter. This is the one module of
`jem` that needs Pillow; it reads no files (callers open them) and holds no state.

Every way a decoder stores pixels is handled here on purpose (docs/service.md has the table):
wide integer and float modes are scaled by their documented white level or refused, colour
profiles are applied, transparency (alpha channels, palette and `tRNS` transparency) is
composited onto the model's background, and multi-frame files are refused.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageCms, ImageDraw, ImageFont, ImageOps

from jem.normalize import normalize
from jem.preprocess import InputSpec

__all__ = ["RESAMPLE_FILTERS", "UnsupportedPixelsError", "labelled_grid", "to_pixels"]

# the InputSpec's resampling names -> Pillow filters
RESAMPLE_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}

# Longest side an image is reduced to before normalisation looks for the ink: the 8x8 digits are
# made from 32x32 bitmaps, so 512 px keeps 16x more detail than is ever used, and a 12-megapixel
# photo costs a box filter instead of seconds of numpy.
_NORMALIZE_MAX_SIDE = 512
_WIDE_INTEGER = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_SRGB = ImageCms.createProfile("sRGB")


class UnsupportedPixelsError(ValueError):
    """Pixels stored in a way that has no one right conversion; the message says what to send."""


def _wide_integer(image: Image.Image) -> Image.Image:
    """16-bit (and 32-bit integer) greyscale -> 8 bits by the 16-bit white level (65535 -> 255):
    convert("L") would clip every value above 255 to white. A `tRNS` value becomes alpha."""
    wide = np.asarray(image).astype(np.int64)
    if wide.size and (wide.min() < 0 or wide.max() > 65535):
        raise UnsupportedPixelsError(
            f"32-bit integer pixels with values {wide.min()}..{wide.max()} have no agreed white "
            "level; send 8- or 16-bit pixels, or 32-bit float pixels in [0, 1]"
        )
    grey = Image.fromarray(np.round(wide / 257.0).astype(np.uint8), "L")
    transparent = image.info.get("transparency")
    if isinstance(transparent, int):
        alpha = np.where(wide == transparent, 0, 255).astype(np.uint8)
        return Image.merge("LA", (grey, Image.fromarray(alpha, "L")))
    return grey


def _float(image: Image.Image) -> Image.Image:
    """32-bit float greyscale: [0, 1] (the float convention) or, above 1, 0..255; else refused."""
    values = np.asarray(image, dtype=np.float64)
    if not np.isfinite(values).all():
        raise UnsupportedPixelsError(
            "float pixels include NaN or infinity; send finite values in [0, 1]"
        )
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if low < 0.0 or high > 255.0:
        raise UnsupportedPixelsError(
            f"float pixels span {low:.4g}..{high:.4g}; send them in [0, 1] (or 0..255)"
        )
    scale = 255.0 if high <= 1.0 else 1.0
    return Image.fromarray(np.round(values * scale).astype(np.uint8), "L")


def _to_srgb(image: Image.Image) -> Image.Image:
    """Apply an embedded ICC profile (or CIELab's definition) to get sRGB, as browsers do; a
    broken profile is ignored (the pixels are taken as sRGB), again as browsers do."""
    icc = image.info.get("icc_profile")
    try:
        if image.mode == "LAB":
            source = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB"))
        elif icc and image.mode in ("RGB", "RGBA", "CMYK", "L"):
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        else:
            return image
        out_mode = "RGBA" if image.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(image, source, _SRGB, outputMode=out_mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        if image.mode == "LAB":
            raise UnsupportedPixelsError(
                "CIELab pixels could not be converted; send sRGB"
            ) from None
        return image
    assert converted is not None  # profileToProfile returns None only with inPlace=True
    return converted


def _standard(image: Image.Image) -> Image.Image:
    """Any decoded storage -> 1, L, LA, P, PA, RGB or RGBA (transparency still in `info`)."""
    if getattr(image, "is_animated", False) and image.format != "MPO":
        # (MPO: a camera JPEG with preview or depth frames; frame 0 is the photograph)
        raise UnsupportedPixelsError(
            f"this {image.format} file holds more than one frame (an animation or several "
            "pages); send one still image"
        )
    # a phone photo's EXIF orientation (2..8: flipped or turned). Asked first: exif_transpose
    # copies an image that needs none, a tenth of a small PNG's decoding time
    image.load()  # a PNG's eXIf chunk may follow its pixels
    if image.getexif().get(ExifTags.Base.Orientation, 1) in range(2, 9):
        image = ImageOps.exif_transpose(image)
    if image.mode in _WIDE_INTEGER:
        return _wide_integer(image)
    if image.mode == "F":
        return _float(image)
    image = _to_srgb(image)
    if image.mode in ("1", "L", "LA", "P", "PA", "RGB", "RGBA"):
        return image
    try:  # CMYK without a profile, YCbCr, HSV, RGBX, premultiplied RGBa/La, ...
        return image.convert("RGBA" if "a" in image.mode.lower() else "RGB")
    except ValueError:
        raise UnsupportedPixelsError(
            f"pixels of mode {image.mode} cannot be converted; send RGB or greyscale"
        ) from None


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def _background(rgba: Image.Image, spec: InputSpec) -> tuple[int, int, int]:
    """The spec's background; for a normalising model left at "auto", the one that contrasts
    with the strokes, judged by the brightest opaque pixels (light strokes: black; dark strokes
    on a transparent canvas: white, so they stay visible)."""
    if spec.background != "auto" or spec.normalization is None:
        return spec.background_rgb
    grey = np.asarray(rgba.convert("RGB").convert("L"))
    opaque = grey[np.asarray(rgba.getchannel("A")) >= 128]
    if opaque.size == 0:
        return spec.background_rgb
    return (0, 0, 0) if np.percentile(opaque, 99) > 127.5 else (255, 255, 255)


def _normalized(image: Image.Image, spec: InputSpec) -> np.ndarray[Any, Any] | None:
    assert spec.normalization is not None
    grey = image.convert("L")
    longest = max(grey.size)
    if longest > _NORMALIZE_MAX_SIDE:
        scale = _NORMALIZE_MAX_SIDE / longest
        size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
        grey = grey.resize(size, resample=Image.Resampling.BOX)
    return normalize(spec.normalization, np.asarray(grey), spec.height, spec.width)


def to_pixels(image: Image.Image, spec: InputSpec) -> np.ndarray[Any, Any]:
    """A decoded Pillow image (any size, any storage) -> uint8 (H, W, C) in the model's spec.

    Order: storage made standard (multi-frame files refused; EXIF orientation applied; wide
    integers and floats scaled, ICC profiles applied, other modes converted); transparent
    pixels composited onto the background; converted to `spec.color_mode`; then either the
    model's normalisation (`spec.normalization`, for an image not already at the model's
    size: such an image is taken to be normalised already, as the data set's own images are;
    nor for one that is not ink on a background, see `jem.normalize.normalize`) or a plain
    resize with `spec.resample`; inverted when `spec.invert`.

    Raises UnsupportedPixelsError (a ValueError) for storage refused on purpose, and whatever Pillow
    raises for pixels it cannot decode (OSError, ValueError): callers map both to their errors.
    """
    image = _standard(image)
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_background(rgba, spec), 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode != spec.color_mode:
        image = image.convert(spec.color_mode)
    at_size = image.size == (spec.width, spec.height)
    normalized = None if at_size or spec.normalization is None else _normalized(image, spec)
    if normalized is not None:
        array = 255 - normalized if spec.invert else normalized
    elif at_size:
        # the common case (images at the model's size): invert in numpy, 5x cheaper than
        # ImageOps.invert's lookup table and the same values. The pixels through `tobytes`
        # (mode L or RGB here: packed, one byte per channel), as np.asarray reads them, without
        # its array-interface step (~3 us of a digit's ~50 us decode)
        shape = (image.height, image.width) + ((3,) if image.mode == "RGB" else ())
        array = np.frombuffer(image.tobytes(), dtype=np.uint8).reshape(shape)
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
