"""jem.imaging.to_pixels: the one Pillow image -> model pixels path (training and service)."""

from __future__ import annotations

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
