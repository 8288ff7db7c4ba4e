"""jem.imaging.to_pixels: the one Pillow image -> model pixels path (training and service)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest
from PIL import Image

from jem import InputSpec
from jem.imaging import to_pixels


def half_transparent() -> Image.Image:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[:, :2] = (200, 10, 10, 255)  # opaque red on the left, fully transparent on the right
    return Image.fromarray(rgba, "RGBA")


@pytest.mark.parametrize(
    ("background", "invert", "expected"),
    [
        ("auto", False, (0, 0, 0)),
        ("auto", True, (255, 255, 255)),
        ("white", False, (255, 255, 255)),
        ("#102030", False, (16, 32, 48)),
    ],
)
def test_transparent_pixels_become_the_background(
    background: str, invert: bool, expected: tuple[int, int, int]
) -> None:
    spec = InputSpec(
        channels=3, height=4, width=4, color_mode="RGB", invert=invert, background=background
    )
    assert spec.background_rgb == expected
    out = to_pixels(half_transparent(), spec)
    assert out.shape == (4, 4, 3)
    # the background is composited first, then the whole image is inverted if the spec says so
    background, red = np.array(expected), np.array((200, 10, 10))
    if invert:
        background, red = 255 - background, 255 - red
    np.testing.assert_array_equal(out[:, 2:], np.broadcast_to(background, (4, 2, 3)))
    np.testing.assert_array_equal(out[:, :2], np.broadcast_to(red, (4, 2, 3)))


def test_invert_happens_before_resizing_and_sizes_agree() -> None:
    grey = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, "L")
    spec = InputSpec(channels=1, height=4, width=4, color_mode="L", invert=True)
    out = to_pixels(grey, spec)
    assert out.shape == (4, 4, 1)
    plain = to_pixels(grey, InputSpec(channels=1, height=4, width=4, color_mode="L"))
    # box filter means of inverted pixels == 255 - means, up to rounding
    assert np.abs(out.astype(int) + plain.astype(int) - 255).max() <= 1


@pytest.mark.parametrize("bad", ["grey", "#12345", "#gg0000", ""])
def test_a_bad_background_is_refused_by_name(bad: str) -> None:
    with pytest.raises(ValueError, match="background must be"):
        InputSpec(channels=3, height=4, width=4, color_mode="RGB", background=bad)


@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("invert", [False, True])
def test_images_at_the_models_size_keep_their_pixels(mode: str, invert: bool) -> None:
    """The at-size path reads the pixels as np.asarray(image) would, as a writable array of
    its own (decoded PNGs and in-memory images, odd widths included)."""
    import io

    rng = np.random.default_rng(0)
    channels = 3 if mode == "RGB" else 1
    pixels = rng.integers(0, 256, size=(5, 7, channels), dtype=np.uint8)
    color_mode: Literal["L", "RGB"] = "RGB" if mode == "RGB" else "L"
    spec = InputSpec(channels=channels, height=5, width=7, color_mode=color_mode, invert=invert)
    image = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    for source in (image, Image.open(io.BytesIO(buffer.getvalue()))):
        got = to_pixels(source, spec)
        expected = np.asarray(source).reshape(5, 7, channels)
        np.testing.assert_array_equal(got, 255 - expected if invert else expected)
        assert got.dtype == np.uint8
        assert got.flags.writeable
        assert got.base is None or got.base.flags.owndata
