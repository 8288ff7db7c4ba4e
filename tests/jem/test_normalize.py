"""digits-v1, -v2 and -v3: a photographed or drawn digit -> the form of scikit-learn's digits."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from jem import InputSpec
from jem.imaging import to_pixels
from jem.normalize import normalize, slant

SPEC = InputSpec(channels=1, height=8, width=8, color_mode="L", normalization="digits-v1")


def ring(size: tuple[int, int], box: tuple[int, int, int, int], width: int) -> np.ndarray:
    """A light ellipse outline (a '0') on black, `size` = (width, height)."""
    image = Image.new("L", size, 0)
    ImageDraw.Draw(image).ellipse(box, outline=255, width=width)
    return np.asarray(image)


def test_polarity_position_and_size_do_not_matter() -> None:
    centred = normalize("digits-v1", ring((300, 300), (110, 60, 190, 240), 12), 8, 8)
    moved = normalize("digits-v1", ring((420, 260), (10, 20, 70, 155), 9), 8, 8)
    dark_on_light = normalize("digits-v1", 255 - ring((300, 300), (110, 60, 190, 240), 12), 8, 8)
    assert centred is not None
    assert moved is not None
    assert np.array_equal(centred, dark_on_light)
    assert np.abs(centred.astype(int) - moved.astype(int)).max() <= 255 * 3 // 16


def test_the_data_sets_form_height_filled_centred_by_box_counts_of_16() -> None:
    out = normalize("digits-v1", ring((300, 300), (40, 60, 120, 240), 6), 8, 8)
    assert out is not None
    counts = out.astype(int) * 16 / 255
    assert np.allclose(counts, np.round(counts), atol=0.05)  # block counts 0..16, rounded
    rows, cols = np.flatnonzero(out.any(axis=1)), np.flatnonzero(out.any(axis=0))
    assert (rows[0], rows[-1]) == (0, 7)  # the height fills the frame, as every load_digits digit
    assert cols[0] + cols[-1] in (6, 7, 8)  # centred by box
    # a thin pen stroke is brought to the data set's ink coverage (30.5% of the 32x32 frame)
    assert counts.sum() / 1024 == pytest.approx(0.305, abs=0.05)


def bar(size: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """A light filled rectangle on black (a '1', or a wide stroke), `size` = (width, height)."""
    image = Image.new("L", size, 0)
    ImageDraw.Draw(image).rectangle(box, fill=255)
    return np.asarray(image)


def columns(out: np.ndarray | None) -> int:
    assert out is not None
    return int(out.any(axis=0).sum())


def test_v2_fills_the_height_and_clips_the_width_to_the_data_sets() -> None:
    """load_digits' widths: 6 blocks for 77% of digits, 4 or fewer for 3%, even its 1s; v1 keeps
    the aspect ratio (a narrow glyph 4 blocks wide, a wide one 8), v2 clips the box's width to
    20..24 of the 32 bitmap pixels."""
    narrow = ring((300, 300), (120, 40, 170, 260), 10)  # a tall, narrow 0
    wide = ring((300, 300), (20, 100, 280, 200), 10)  # wider than tall
    one = bar((300, 300), (140, 40, 152, 260))  # a plain vertical stroke
    assert columns(normalize("digits-v1", narrow, 8, 8)) <= 4
    assert columns(normalize("digits-v2", narrow, 8, 8)) in (5, 6)
    wide_v1, wide_v2 = normalize("digits-v1", wide, 8, 8), normalize("digits-v2", wide, 8, 8)
    assert wide_v1 is not None
    assert wide_v2 is not None
    assert columns(wide_v1) == 8  # v1: the width fills the frame, and not the height
    assert not wide_v1[0].any()
    assert columns(wide_v2) in (6, 7)  # v2: at most 24 px wide, and the height filled
    assert wide_v2[0].any()
    assert wide_v2[7].any()
    assert columns(normalize("digits-v2", one, 8, 8)) in (5, 6)  # at least 20 px, as theirs
    for image in (narrow, wide, 255 - one):  # either polarity, centred by box
        out = normalize("digits-v2", image, 8, 8)
        assert out is not None
        cols = np.flatnonzero(out.any(axis=0))
        assert cols[0] + cols[-1] in (6, 7, 8)


def leaning_bar(lean: float) -> np.ndarray:
    """A light stroke on black whose top is `lean` columns per row to the right of its foot
    (a slanted '1'), 300x300."""
    image = Image.new("L", (300, 300), 0)
    top, foot = 150 + lean * 100, 150 - lean * 100  # rows 50..250: 200 rows, centre at 150
    ImageDraw.Draw(image).polygon(
        [(top - 8, 50), (top + 8, 50), (foot + 8, 250), (foot - 8, 250)], fill=255
    )
    return np.asarray(image)


def test_slant_is_the_columns_the_ink_moves_right_per_row_up() -> None:
    for lean in (-0.3, 0.0, 0.25):
        assert slant(leaning_bar(lean) > 127) == pytest.approx(lean, abs=0.02)


def test_v3_sets_the_slant_to_the_data_sets_mean_and_v2_keeps_it() -> None:
    """digits-v3 shears the fitted ink until its moment slant is load_digits()'s mean (-0.041);
    digits-v2 (and so every checkpoint that names it) keeps the writer's slant."""
    for lean in (-0.35, 0.35):
        v2 = normalize("digits-v2", leaning_bar(lean), 8, 8)
        v3 = normalize("digits-v3", leaning_bar(lean), 8, 8)
        assert v2 is not None
        assert v3 is not None
        assert np.sign(slant(v2)) == np.sign(lean)  # the block counts as weights
        assert abs(slant(v2)) > 0.3
        assert slant(v3) == pytest.approx(-0.041, abs=0.03)
        rows, cols = np.flatnonzero(v3.any(axis=1)), np.flatnonzero(v3.any(axis=0))
        assert (rows[0], rows[-1]) == (0, 7)  # still v2's frame: the height filled ...
        assert cols[0] + cols[-1] in (6, 7, 8)  # ... centred by box
    upright = ring((300, 300), (110, 60, 190, 240), 12)  # already at about the mean: kept
    v2, v3 = normalize("digits-v2", upright, 8, 8), normalize("digits-v3", upright, 8, 8)
    assert v2 is not None
    assert v3 is not None
    assert np.abs(v2.astype(int) - v3.astype(int)).max() <= 255 * 4 // 16


def test_what_is_not_ink_on_a_background_is_left_to_the_plain_resize() -> None:
    rng = np.random.default_rng(0)
    flat = np.full((200, 300), 180, dtype=np.uint8)
    paper = rng.normal(180, 4, (200, 300)).clip(0, 255).astype(np.uint8)
    texture = rng.integers(0, 256, (200, 300), dtype=np.uint8)  # a photo's texture: no background
    for image in (flat, paper, texture):
        assert normalize("digits-v1", image, 8, 8) is None
        assert normalize("digits-v2", image, 8, 8) is None
        plain = np.asarray(Image.fromarray(image).resize((8, 8), Image.Resampling.BOX))
        assert np.array_equal(to_pixels(Image.fromarray(image), SPEC)[:, :, 0], plain)


def test_to_pixels_normalises_and_leaves_model_sized_images_alone() -> None:
    photo = Image.fromarray(255 - ring((280, 336), (20, 40, 110, 200), 10)).convert("RGB")
    out = to_pixels(photo, SPEC)
    assert out.shape == (8, 8, 1)
    assert np.array_equal(
        out[:, :, 0], normalize("digits-v1", np.asarray(photo.convert("L")), 8, 8)
    )
    already = np.random.default_rng(1).integers(0, 256, (8, 8), dtype=np.uint8)
    assert np.array_equal(to_pixels(Image.fromarray(already), SPEC)[:, :, 0], already)


def test_dark_strokes_on_a_transparent_canvas_stay_visible() -> None:
    rgba = np.zeros((280, 280, 4), dtype=np.uint8)  # transparent black canvas ...
    rgba[..., 3] = ring((280, 280), (90, 40, 190, 240), 14)  # ... with opaque black strokes
    drawn = to_pixels(Image.fromarray(rgba, "RGBA"), SPEC)
    light = to_pixels(Image.fromarray(ring((280, 280), (90, 40, 190, 240), 14)), SPEC)
    assert drawn.any()
    assert np.array_equal(drawn, light)


def test_spec_names_its_normalisation() -> None:
    assert InputSpec(1, 8, 8, "L").normalization is None  # every model saved before the field
    assert InputSpec.from_dict(SPEC.to_dict()) == SPEC
    with pytest.raises(ValueError, match="digits-v1"):
        InputSpec(1, 8, 8, "L", normalization="digits-v0")
    with pytest.raises(ValueError, match="color_mode 'L'"):
        InputSpec(3, 8, 8, "RGB", normalization="digits-v1")
    with pytest.raises(ValueError, match="unknown normalization"):
        normalize("mnist", np.zeros((9, 9)), 8, 8)
