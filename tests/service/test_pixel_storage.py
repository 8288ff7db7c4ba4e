"""Every way an image file stores its pixels: the expected pixels, or the expected 4xx.

Files are written by Pillow as a client's software would write them, then go through the
service's decoder (`decode_image` -> `jem.imaging.to_pixels`) and, for refusals, the service's
one error -> HTTP status mapping. The table these tests pin is in docs/service.md.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageCms

from jem import InputSpec
from service.errors import ServiceError, status_for
from service.images import decode_image

GREY = InputSpec(channels=1, height=2, width=2, color_mode="L", background="white")
RGB = InputSpec(channels=3, height=2, width=2, color_mode="RGB", background="#102030")
LIMIT = 1 << 20


def save(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def decode(data: bytes, spec: InputSpec = GREY) -> np.ndarray:
    return decode_image(data, spec, max_pixels=LIMIT)


def refused(data: bytes, spec: InputSpec = GREY) -> tuple[int, str, str]:
    with pytest.raises(ServiceError) as info:
        decode(data, spec)
    return status_for(info.value), info.value.code, info.value.message


GREY_VALUES = np.array([[0, 100], [200, 255]], dtype=np.uint8)


def test_trns_on_greyscale_becomes_the_background() -> None:
    png = save(Image.fromarray(GREY_VALUES, "L"), "PNG", transparency=100)
    assert Image.open(io.BytesIO(png)).info["transparency"] == 100  # a real tRNS chunk
    assert decode(png).tolist() == [[0, 255], [200, 255]]


def test_trns_on_rgb_becomes_the_background() -> None:
    rgb = np.stack([GREY_VALUES] * 3, axis=-1)
    png = save(Image.fromarray(rgb, "RGB"), "PNG", transparency=(100, 100, 100))
    out = decode(png, RGB)
    assert out[0, 1].tolist() == [16, 32, 48]  # the spec's background
    assert out[1, 0].tolist() == [200, 200, 200]


def test_sixteen_bit_greyscale_scaled_and_its_trns_applied() -> None:
    wide = np.array([[0, 1000], [32896, 65535]], dtype=np.uint16)
    plain = save(Image.fromarray(wide), "PNG")
    assert Image.open(io.BytesIO(plain)).mode == "I;16"
    assert decode(plain).tolist() == [[0, 4], [128, 255]]  # 65535 is white, not 255
    with_trns = save(Image.fromarray(wide), "PNG", transparency=1000)
    assert decode(with_trns).tolist() == [[0, 255], [128, 255]]


@pytest.mark.parametrize(
    ("mode", "pixels", "expected"),
    [
        # black at alpha 128 over white: 255 * 127 / 255 = 127
        ("LA", [[[0, 255], [90, 0]], [[200, 255], [0, 128]]], [[0, 255], [200, 127]]),
        (
            "RGBA",
            [[[9, 9, 9, 255], [0, 0, 0, 0]], [[200, 200, 200, 255], [0, 0, 0, 128]]],
            [[9, 255], [200, 127]],
        ),
    ],
)
def test_alpha_channels_composited_onto_the_background(
    mode: str, pixels: list[Any], expected: list[list[int]]
) -> None:
    data = save(Image.fromarray(np.array(pixels, dtype=np.uint8), mode), "PNG")
    assert decode(data).tolist() == expected


def test_palette_transparency_and_pa() -> None:
    palette = Image.fromarray(np.array([[0, 1], [2, 1]], dtype=np.uint8), "P")
    palette.putpalette([10, 10, 10, 250, 0, 0, 90, 90, 90] + [0] * 759)
    png = save(palette, "PNG", transparency=1)  # index 1 transparent
    assert decode(png).tolist() == [[10, 255], [90, 255]]
    gif = save(palette, "GIF", transparency=1)
    assert decode(gif).tolist() == [[10, 255], [90, 255]]
    pa = palette.convert("PA")
    alpha = np.array([[255, 255], [0, 255]], dtype=np.uint8)
    pa.putalpha(Image.fromarray(alpha, "L"))
    assert np.asarray(pa.convert("RGBA"))[1, 0, 3] == 0
    out = decode(save(pa.convert("RGBA"), "PNG"))
    assert out[1, 0] == 255
    assert out[0, 0] == 10


def test_bilevel() -> None:
    bits = Image.fromarray(np.array([[True, False], [False, True]])).convert("1")
    assert decode(save(bits, "PNG")).tolist() == [[255, 0], [0, 255]]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([[0.0, 0.5], [1.0, 0.25]], [[0, 128], [255, 64]]),  # [0, 1]: the float convention
        ([[0.0, 50.0], [255.0, 2.0]], [[0, 50], [255, 2]]),  # above 1: already 0..255
    ],
)
def test_float_pixels_scaled_by_their_range(values: list[Any], expected: list[Any]) -> None:
    tiff = save(Image.fromarray(np.array(values, dtype=np.float32), "F"), "TIFF")
    assert Image.open(io.BytesIO(tiff)).mode == "F"
    assert decode(tiff).tolist() == expected


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ([[0.0, np.nan], [1.0, 0.0]], "NaN"),
        ([[-1.0, 0.0], [1.0, 0.0]], "[0, 1]"),
        ([[0.0, 1e6], [1.0, 0.0]], "[0, 1]"),
    ],
)
def test_float_pixels_outside_any_range_are_refused(values: list[Any], says: str) -> None:
    tiff = save(Image.fromarray(np.array(values, dtype=np.float32), "F"), "TIFF")
    status, code, message = refused(tiff)
    assert (status, code) == (422, "unsupported_pixels")
    assert says in message


def test_thirty_two_bit_integers() -> None:
    small = save(Image.fromarray(np.array([[0, 65535], [257, 0]], dtype=np.int32)), "TIFF")
    assert Image.open(io.BytesIO(small)).mode == "I"
    assert decode(small).tolist() == [[0, 255], [1, 0]]  # within 16 bits: the 16-bit scale
    wide = save(Image.fromarray(np.array([[0, 70000], [1, 2]], dtype=np.int32)), "TIFF")
    status, code, message = refused(wide)
    assert (status, code) == (422, "unsupported_pixels")
    assert "16-bit" in message


def test_cmyk_converted_to_rgb() -> None:
    cmyk = np.zeros((16, 16, 4), dtype=np.uint8)  # quadrants, large enough for JPEG's blocks
    cmyk[:8, :8] = (0, 0, 0, 255)  # full black ink
    cmyk[:8, 8:] = (255, 0, 0, 0)  # full cyan
    for fmt in ("TIFF", "JPEG"):
        out = decode(save(Image.fromarray(cmyk, "CMYK"), fmt), RGB)
        assert out[1, 1].tolist() == pytest.approx([255, 255, 255], abs=3), fmt  # no ink: white
        assert out[0, 0].tolist() == pytest.approx([0, 0, 0], abs=3), fmt
        assert out[0, 1, 0] < 40 < 200 < out[0, 1, 2], fmt  # cyan: no red, full blue


def test_icc_profiles_applied_and_broken_ones_ignored() -> None:
    rgb = Image.fromarray(np.array([[[200, 30, 30]] * 2] * 2, dtype=np.uint8), "RGB")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    with_profile = decode(save(rgb, "PNG", icc_profile=srgb), RGB)
    assert with_profile[0, 0].tolist() == pytest.approx([200, 30, 30], abs=2)
    broken = decode(save(rgb, "PNG", icc_profile=b"not a profile"), RGB)
    assert broken[0, 0].tolist() == [200, 30, 30]  # taken as sRGB, as browsers do


def test_cielab_converted_through_its_definition() -> None:
    lab = np.zeros((2, 2, 3), dtype=np.uint8)
    # a* = b* = 0 (neutral; signed bytes, as CIELab TIFFs store them)
    lab[0, 0, 0] = 255  # L* = 100: white
    out = decode(save(Image.fromarray(lab, "LAB"), "TIFF"), RGB)
    assert out[0, 0].tolist() == pytest.approx([255, 255, 255], abs=3)
    assert out[1, 1].tolist() == pytest.approx([0, 0, 0], abs=3)


def frames(n: int) -> list[Image.Image]:
    return [Image.fromarray(np.full((2, 2), 60 * i, dtype=np.uint8), "L") for i in range(n)]


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "TIFF", "WEBP"])
def test_multi_frame_files_are_refused(fmt: str) -> None:
    first, *rest = frames(3)
    data = save(first, fmt, save_all=True, append_images=rest)
    status, code, message = refused(data)
    assert (status, code) == (422, "unsupported_pixels")
    assert "more than one frame" in message
    assert "one still image" in message
    # the same format with one frame is fine
    assert decode(save(first, fmt)).shape == (2, 2)
