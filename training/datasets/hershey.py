"""Digits drawn as pen strokes from the Hershey vector fonts (Debian ``hershey-fonts-data``,
``/usr/share/hershey-fonts/*.jhf``): the centre lines of each glyph, so one face drawn with a
thin or a thick pen, and a wobbling hand, gives the strokes of many writers. A source of
``rendered-digits-v2`` (training/datasets/digit_rendering.py).

The ``.jhf`` format (A. V. Hershey, 1967, as distributed by the US NTIS and kept by
libhersheyfont): one record per glyph, in ASCII order from the space (glyph 0 = ``" "``, so the
digit ``d`` is glyph ``16 + d``): a 5-character number, a 3-character count ``n`` of coordinate
pairs, then ``n`` pairs of characters (a record may continue on the next lines). The first pair
is the glyph's left and right extent; each other pair is one vertex, each coordinate
``ord(c) - ord("R")`` (y grows downwards), and the pair ``" R"`` lifts the pen.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["HERSHEY_DIR", "Strokes", "digit_strokes", "draw_strokes", "read_jhf"]

HERSHEY_DIR = Path("/usr/share/hershey-fonts")
Strokes = list[list[tuple[float, float]]]  # pen-down polylines, font units, y down


@cache
def read_jhf(path: str) -> tuple[Strokes, ...]:
    """Every glyph of a ``.jhf`` file, in file order, as its pen-down polylines.

    Raises ValueError for a record that ends before its count says, OSError for no file."""
    text = Path(path).read_text(encoding="latin-1")
    glyphs: list[Strokes] = []
    pos = 0
    while pos < len(text):
        if text[pos] in "\r\n":
            pos += 1
            continue
        count = int(text[pos + 5 : pos + 8])
        pos += 8
        chars: list[str] = []
        while len(chars) < 2 * count:
            if pos >= len(text):
                raise ValueError(f"{path}: glyph {len(glyphs)} ends early")
            if text[pos] not in "\r\n":
                chars.append(text[pos])
            pos += 1
        strokes: Strokes = [[]]
        for i in range(2, len(chars), 2):  # the first pair is the glyph's extent
            if chars[i] == " " and chars[i + 1] == "R":
                strokes.append([])
            else:
                strokes[-1].append((ord(chars[i]) - 82.0, ord(chars[i + 1]) - 82.0))
        glyphs.append([s for s in strokes if s])
    return tuple(glyphs)


def digit_strokes(path: str, digit: int) -> Strokes:
    """The digit's polylines in one of the ASCII-ordered Hershey files."""
    glyphs = read_jhf(path)
    if len(glyphs) < 26:
        raise ValueError(f"{path} has no ASCII digits ({len(glyphs)} glyphs)")
    return glyphs[16 + digit]


def draw_strokes(
    strokes: Strokes, height: int, pen: int, rng: np.random.Generator, jitter: float
) -> Image.Image:
    """The strokes scaled to ``height`` px tall, drawn with a round pen ``pen`` px wide, every
    vertex moved by Gaussian noise of ``jitter`` times the height (an unsteady hand), as an L
    mask (255 = ink) with room around it for rotation and slant."""
    points = np.concatenate([np.asarray(s) for s in strokes])
    top, bottom = float(points[:, 1].min()), float(points[:, 1].max())
    left = float(points[:, 0].min())
    scale = height / max(bottom - top, 1.0)
    width = int(np.ceil((float(points[:, 0].max()) - left) * scale))
    pad = max(width, height) // 2 + pen + 4
    mask = Image.new("L", (width + 2 * pad, height + 2 * pad), 0)
    draw = ImageDraw.Draw(mask)
    for stroke in strokes:
        xy = (np.asarray(stroke) - (left, top)) * scale + pad
        xy = xy + rng.normal(0.0, jitter * height, size=xy.shape)
        line = [(float(x), float(y)) for x, y in xy]
        if len(line) > 1:
            draw.line(line, fill=255, width=pen, joint="curve")
        for x, y in (line[0], line[-1]):  # round caps (and dots)
            draw.ellipse((x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2), fill=255)
    return mask
