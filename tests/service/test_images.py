"""Decoding uploads: formats, conversion per the input spec, and every way an upload can be bad."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from jem import InputSpec, uint8_to_tensor
from service.errors import (
    CorruptImage,
    ImageTooLarge,
    InvalidInput,
    NotAnImage,
    UnsupportedImageFormat,
)
from service.images import (
    decode_base64,
    decode_image,
    pixels_to_tensor,
    tensor_to_images,
)

SPEC = InputSpec(channels=1, height=8, width=8, color_mode="L")
RGB = InputSpec(channels=3, height=4, width=4, color_mode="RGB", resample="nearest")
DIGIT = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4).astype(np.uint8)


def encode(image: Image.Image, fmt: str, **kw: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "GIF", "TIFF", "WEBP"])
def test_lossless_formats_round_trip(fmt: str) -> None:
    kw = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(Image.fromarray(DIGIT), fmt, **kw)
    np.testing.assert_array_equal(decode_image(data, SPEC, max_pixels=10_000), DIGIT)


def test_jpeg_decodes_close() -> None:
    data = encode(Image.fromarray(DIGIT), "JPEG", quality=95)
    out = decode_image(data, SPEC, max_pixels=10_000)
    assert np.abs(out.astype(int) - DIGIT).mean() < 8


def test_rgb_upload_converted_and_resized_to_spec() -> None:
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[:, :, 0] = 255  # pure red -> L = 76 (ITU-R 601-2 luma)
    out = decode_image(encode(Image.fromarray(rgb), "PNG"), SPEC, max_pixels=10_000)
    assert out.shape == (8, 8)
    assert set(np.unique(out)) == {76}
    grey = decode_image(encode(Image.fromarray(DIGIT), "PNG"), RGB, max_pixels=10_000)
    assert grey.shape == (4, 4, 3)


def test_invert_and_transparency() -> None:
    spec = InputSpec(channels=1, height=8, width=8, color_mode="L", invert=True)
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)  # fully transparent -> white background
    rgba[0, 0] = (0, 0, 0, 255)  # one opaque black pixel
    out = decode_image(encode(Image.fromarray(rgba), "PNG"), spec, max_pixels=10_000)
    assert out[0, 0] == 255
    assert out[1, 1] == 0


def test_exif_orientation_applied() -> None:
    image = Image.fromarray(DIGIT)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = encode(image, "JPEG", quality=100, exif=exif.tobytes())
    out = decode_image(data, SPEC, max_pixels=10_000).astype(int)
    expected = np.rot90(DIGIT, k=-1).astype(int)
    assert np.abs(out - expected).mean() < np.abs(out - DIGIT.astype(int)).mean()


def test_bad_uploads_raise_named_errors() -> None:
    png = encode(Image.fromarray(DIGIT), "PNG")
    with pytest.raises(NotAnImage):
        decode_image(b"hello, not an image", SPEC, max_pixels=10_000)
    with pytest.raises(NotAnImage):
        decode_image(b"", SPEC, max_pixels=10_000)
    for cut in (len(png) // 2, len(png) - 20):
        with pytest.raises(CorruptImage, match="truncated or corrupt PNG file"):
            decode_image(png[:cut], SPEC, max_pixels=10_000)
    jpeg = encode(Image.fromarray(DIGIT), "JPEG")
    with pytest.raises(CorruptImage, match="JPEG"):
        decode_image(jpeg[:-200], SPEC, max_pixels=10_000)
    with pytest.raises(UnsupportedImageFormat, match="PPM"):
        decode_image(encode(Image.fromarray(DIGIT), "PPM"), SPEC, max_pixels=10_000)
    with pytest.raises(ImageTooLarge, match="JEM_MAX_IMAGE_PIXELS"):
        decode_image(png, SPEC, max_pixels=63)


def test_corrupt_compressed_data_is_refused() -> None:
    """A bit flip anywhere in the pixel chunk or its CRC is refused. (Pillow alone decodes some
    of these to wrong pixels without an error: it stops inflating before zlib's checksum.)"""
    png = encode(Image.fromarray(DIGIT), "PNG")
    start = png.index(b"IDAT") + 4
    length = int.from_bytes(png[start - 8 : start - 4], "big")
    for pos in range(start, start + length + 4):
        flipped = bytearray(png)
        flipped[pos] ^= 0x01
        with pytest.raises(CorruptImage, match="PNG"):
            decode_image(bytes(flipped), SPEC, max_pixels=10_000)


def test_inversion_matches_pillow() -> None:
    """The numpy fast path (image at the model's size) gives Pillow's ImageOps.invert values."""
    from PIL import ImageOps

    inverted = InputSpec(channels=1, height=8, width=8, color_mode="L", invert=True)
    image = Image.fromarray(DIGIT)
    got = decode_image(encode(image, "PNG"), inverted, max_pixels=10_000)
    np.testing.assert_array_equal(got, np.asarray(ImageOps.invert(image)))
    assert got.flags.writeable


def test_pillow_bomb_guard_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # 64 pixels > 2 x 30: Pillow raises while opening, whatever the warning filters are
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30)
    png = encode(Image.fromarray(DIGIT), "PNG")
    with pytest.raises(ImageTooLarge):
        decode_image(png, SPEC, max_pixels=10_000)


def test_base64() -> None:
    assert (
        decode_base64("data:image/png;base64," + base64.b64encode(b"ab").decode(), name="x")
        == b"ab"
    )
    with pytest.raises(NotAnImage, match="base64"):
        decode_base64("not base64!!", name="x")


def test_pixels_float_uint8_and_validation() -> None:
    u8 = np.stack([DIGIT, DIGIT[::-1]])
    as_float = uint8_to_tensor(u8[..., None], SPEC)
    torch.testing.assert_close(pixels_to_tensor(as_float.tolist(), SPEC, "float"), as_float)
    torch.testing.assert_close(pixels_to_tensor(u8[:, None].tolist(), SPEC, "uint8"), as_float)
    torch.testing.assert_close(pixels_to_tensor(u8.tolist(), SPEC, "uint8"), as_float)  # (H, W)
    bad = [
        ([[[0.0] * 7] * 8], "shape"),
        ([[[[0.0] * 8] * 8] * 2], "shape"),
        ([[[0.0] * 8] * 7 + [[0.0] * 7]], "nested list"),
        ([[[float("nan")] * 8] * 8], "NaN"),
        ([[[float("inf")] * 8] * 8], "NaN"),
        ([[[1.5] * 8] * 8], r"\[-1.0, 1.0\]"),
        ([["a"] * 8] * 8, "nested list"),
    ]
    for pixels, message in bad:
        with pytest.raises(InvalidInput, match=message):
            pixels_to_tensor(pixels, SPEC, "float")
    with pytest.raises(InvalidInput, match=r"0\.\.255"):
        pixels_to_tensor([[[256] * 8] * 8], SPEC, "uint8")
    with pytest.raises(InvalidInput, match=r"0\.\.255"):
        pixels_to_tensor([[[0.5] * 8] * 8], SPEC, "uint8")


def test_tensor_to_images_round_trips_through_decode() -> None:
    x = uint8_to_tensor(np.stack([DIGIT, DIGIT.T])[..., None], SPEC)
    images = tensor_to_images(x, SPEC)
    back = [decode_image(encode(im, "PNG"), SPEC, max_pixels=10_000) for im in images]
    np.testing.assert_array_equal(np.stack(back), np.stack([DIGIT, DIGIT.T]))
