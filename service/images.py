"""Turning client input (image files, base64, pixel arrays) into model tensors, and back."""

from __future__ import annotations

import base64
import binascii
import io
import struct
import zlib
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from jem import InputSpec, imaging, tensor_to_uint8, uint8_to_tensor
from jem.imaging import to_pixels
from service.errors import (
    CorruptImage,
    ImageTooLarge,
    InvalidInput,
    NotAnImage,
    UnsupportedImageFormat,
    UnsupportedPixels,
)

__all__ = [
    "SUPPORTED_FORMATS",
    "PixelFormat",
    "decode_base64",
    "decode_image",
    "encode_png",
    "images_to_tensor",
    "pixels_to_tensor",
    "tensor_to_images",
]

SUPPORTED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
PixelFormat = Literal["float", "uint8"]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_ONLY = ("PNG",)
_MAGIC = (
    (_PNG_MAGIC, "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


_CHUNK_HEAD = struct.Struct(">I4s")  # a PNG chunk's length and type


def _check_png_chunks(data: bytes) -> None:
    """Every chunk's CRC, up to IEND (what Pillow's verify() checks, without a second open:
    verify() leaves the image unusable, and reopening doubled the cost of a small upload)."""
    view, pos, size = memoryview(data), 8, len(data)
    while pos + 12 <= size:
        length, kind = _CHUNK_HEAD.unpack_from(data, pos)
        end = pos + 12 + length
        if end > size:
            break
        if zlib.crc32(view[pos + 4 : end - 4]) != int.from_bytes(view[end - 4 : end], "big"):
            raise SyntaxError(f"CRC mismatch in the {kind!r} chunk")
        if kind == b"IEND":
            return
        pos = end
    raise EOFError("the file ends before its IEND chunk")


def _sniff(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for magic, fmt in _MAGIC if data.startswith(magic)), None)


def _open(data: bytes, formats: tuple[str, ...] | None) -> Image.Image:
    # No warnings.catch_warnings() here: it swaps process-global filters, which is not
    # thread-safe (uploads are decoded on worker threads) and costs ~20 us per image. Our own
    # pixel limit (JEM_MAX_IMAGE_PIXELS, capped at Pillow's MAX_IMAGE_PIXELS) refuses every image
    # that Pillow's decompression-bomb guard would only warn about, before any pixel is decoded.
    return Image.open(io.BytesIO(data), formats=formats)


def decode_image(
    data: bytes, spec: InputSpec, *, max_pixels: int, name: str = "image"
) -> np.ndarray:
    """Decode one uploaded image to uint8 pixels (H, W) or (H, W, 3) in the model's input spec
    (storage, transparency and the model's normalisation: `jem.imaging.to_pixels`)."""
    if not data:
        raise NotAnImage(f"{name}: empty file; send PNG, JPEG, BMP, GIF, TIFF or WebP bytes")
    try:
        # a PNG is opened by the PNG plugin alone: no other accepted format starts like one, and
        # Pillow would first ask the BMP, GIF and JPEG plugins (~1-3 us a file)
        image = _open(data, _PNG_ONLY if data.startswith(_PNG_MAGIC) else SUPPORTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"{name}: {exc}") from exc
    except UnidentifiedImageError:
        try:
            other = _open(data, None)
        except Exception:
            fmt = _sniff(data)
            if fmt is not None:
                raise CorruptImage(f"{name}: truncated or corrupt {fmt} file") from None
            raise NotAnImage(
                f"{name}: not an image Pillow can read; send PNG, JPEG, BMP, GIF, TIFF or WebP"
            ) from None
        raise UnsupportedImageFormat(
            f"{name}: {other.format} images are not accepted; "
            f"send one of {', '.join(SUPPORTED_FORMATS)}"
        ) from None
    except Exception as exc:
        fmt = _sniff(data) or "image"
        raise CorruptImage(f"{name}: truncated or corrupt {fmt} file ({exc})") from exc

    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{name}: {width}x{height} = {width * height} pixels exceeds the limit of "
            f"{max_pixels} (JEM_MAX_IMAGE_PIXELS); downscale it before sending"
        )
    try:
        if image.format == "PNG":
            # Pillow stops inflating once it has every row, so zlib's own checksum is never read
            # and a flipped bit can decode to wrong pixels silently: check the chunk CRCs first.
            _check_png_chunks(data)
        image.load()
        array = to_pixels(image, spec)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"{name}: {exc}") from exc
    except imaging.UnsupportedPixelsError as exc:
        raise UnsupportedPixels(f"{name}: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage(f"{name}: truncated or corrupt {image.format} file ({exc})") from exc
    return array[:, :, 0] if array.shape[2] == 1 else array  # (H, W) for one channel: a view


def images_to_tensor(arrays: Sequence[np.ndarray], spec: InputSpec) -> torch.Tensor:
    batch = arrays[0][None] if len(arrays) == 1 else np.stack(arrays)  # (B, H, W[, C])
    return uint8_to_tensor(batch if batch.ndim == 4 else batch[..., None], spec)


def decode_base64(value: str, *, name: str) -> bytes:
    if value.startswith("data:"):
        _, _, value = value.partition(",")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NotAnImage(f"{name}: not valid base64 ({exc})") from exc


def pixels_to_tensor(
    pixels: Sequence[Any] | np.ndarray,
    spec: InputSpec,
    pixel_format: PixelFormat,
    uint8_hint: str = "send 0..255 with pixel_format 'uint8'",
    float_term: str = "with pixel_format 'float'",
) -> torch.Tensor:
    """Validate pixel arrays in the model's input shape (C, H, W) and return a (B, C, H, W) batch.

    `float`: values in the spec's value range (default [-1, 1]); `uint8`: integers 0..255.
    A one-channel model also accepts (H, W) per image. `uint8_hint` ends the out-of-range
    error: how the caller's protocol sends 0..255 instead; `float_term` names, in its terms,
    what carried the floats.

    Raises:
        InvalidInput: not numbers, the wrong shape, NaN/inf, or values out of range.
    """
    expected = spec.shape
    try:
        raw = np.asarray(pixels)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            "pixels: every image must be a nested list of numbers of shape "
            f"{list(expected)} ({exc})"
        ) from exc
    if raw.size and raw.dtype.kind not in "iuf":  # strings, booleans, nulls, mixed types
        raise InvalidInput(
            "pixels: every image must be a nested list of numbers; strings, booleans, nulls "
            "and integers beyond 64 bits are refused"
        )
    array = raw.astype(np.float64)
    if array.ndim == 3 and expected[0] == 1:
        array = array[:, None]
    if array.ndim != 4 or tuple(array.shape[1:]) != expected:
        raise InvalidInput(
            f"pixels: got an array of shape {list(array.shape)}; expected "
            f"[N, {', '.join(map(str, expected))}] (N images in the model's input shape)"
        )
    if not np.isfinite(array).all():
        raise InvalidInput("pixels: NaN or infinite values are not allowed")
    if pixel_format == "uint8":
        if array.min() < 0 or array.max() > 255 or not np.array_equal(array, np.round(array)):
            raise InvalidInput(
                "pixels: with pixel_format 'uint8' values must be integers in 0..255"
            )
        return uint8_to_tensor(array.astype(np.uint8).transpose(0, 2, 3, 1), spec)
    low, high = spec.value_range
    if array.min() < low or array.max() > high:
        raise InvalidInput(
            f"pixels: values must lie in [{low}, {high}] {float_term} "
            f"(got {array.min():.4g}..{array.max():.4g}); {uint8_hint}"
        )
    return torch.from_numpy(array.astype(np.float32))


def tensor_to_images(x: torch.Tensor, spec: InputSpec) -> list[Image.Image]:
    """Model-space tensors (B, C, H, W) to PIL images as a client would upload them."""
    u8 = tensor_to_uint8(x, spec.value_range).numpy()
    images = []
    for arr in u8:
        image = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr, mode=None)
        images.append(ImageOps.invert(image) if spec.invert else image)
    return images


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
