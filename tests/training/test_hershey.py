"""The Hershey vector-font reader and pen (training/datasets/hershey.py), milliseconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.datasets.digit_rendering import STROKE_FONTS, _crossed_seven
from training.datasets.hershey import digit_strokes, draw_strokes, read_jhf


def test_a_record_is_read_across_lines_with_pen_lifts(tmp_path: Path) -> None:
    # glyph 0: extent then a V; glyph 1: two strokes split by " R", its record on two lines
    jhf = tmp_path / "t.jhf"
    jhf.write_text("    1  4JZKFRUYF\n    2  6JZ\nRFR[ RKRYR\n")
    glyphs = read_jhf(str(jhf))
    assert glyphs[0] == [[(-7.0, -12.0), (0.0, 3.0), (7.0, -12.0)]]
    assert glyphs[1] == [[(0.0, -12.0), (0.0, 9.0)], [(-7.0, 0.0), (7.0, 0.0)]]
    (tmp_path / "short.jhf").write_text("    1  9JZKF\n")
    with pytest.raises(ValueError, match="ends early"):
        read_jhf(str(tmp_path / "short.jhf"))
    with pytest.raises(ValueError, match="no ASCII digits"):
        digit_strokes(str(jhf), 1)


needs_hershey = pytest.mark.skipif(
    not Path(STROKE_FONTS["hershey-fonts-data"][0]).is_file(),
    reason="needs hershey-fonts-data (make system-deps)",
)


@needs_hershey
def test_the_debian_faces_have_every_digit_and_a_pen_draws_them() -> None:
    rng = np.random.default_rng(0)
    for path in STROKE_FONTS["hershey-fonts-data"]:
        assert len(read_jhf(path)) == 96  # the printable ASCII characters
        for digit in range(10):
            assert digit_strokes(path, digit)
    one = digit_strokes(STROKE_FONTS["hershey-fonts-data"][0], 1)
    thin = np.asarray(draw_strokes(one, 100, 2, rng, 0.0)) > 127
    thick = np.asarray(draw_strokes(one, 100, 12, rng, 0.0)) > 127
    rows = np.flatnonzero(thin.any(axis=1))
    assert 99 <= rows[-1] - rows[0] <= 103  # the stroke's height, plus the pen's caps
    assert 4 * thin.sum() < thick.sum()


@needs_hershey
def test_a_crossed_seven_gets_a_level_bar_through_its_stem() -> None:
    seven = digit_strokes(STROKE_FONTS["hershey-fonts-data"][0], 7)
    crossed = _crossed_seven(seven)
    assert crossed[:-1] == seven
    (x0, y0), (x1, y1) = crossed[-1]
    ys = [y for stroke in seven for _, y in stroke]
    assert y0 == y1 == (min(ys) + max(ys)) / 2
    assert x0 < x1
