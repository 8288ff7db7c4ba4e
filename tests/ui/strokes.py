"""Hand-drawn digits for the browser tests: pen strokes in the unit square, one list per digit.

Drawn the way scikit-learn's 8x8 digits look (light on dark, the digit filling the frame's
height and the middle three quarters of its width), as a person would draw them on the pad.
"""

from __future__ import annotations

import math

__all__ = ["DIGIT_STROKES", "Stroke"]

Stroke = list[tuple[float, float]]


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 16) -> Stroke:
    """Points on an ellipse from angle a0 to a1 (degrees, 0 = right, 90 = down)."""
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in (a0 + (a1 - a0) * i / n for i in range(n + 1))
    ]


def _eight(n: int = 32) -> Stroke:
    return [
        (0.5 + 0.22 * math.sin(2 * t), 0.5 + 0.42 * math.cos(t))
        for t in (2 * math.pi * i / n for i in range(n + 1))
    ]


DIGIT_STROKES: dict[int, list[Stroke]] = {
    0: [_arc(0.5, 0.5, 0.26, 0.41, -90, 270, 24)],
    1: [[(0.36, 0.24), (0.56, 0.07), (0.53, 0.93)]],
    2: [[*_arc(0.5, 0.28, 0.24, 0.2, 180, 360, 10), (0.66, 0.5), (0.26, 0.9), (0.8, 0.9)]],
    3: [_arc(0.48, 0.29, 0.24, 0.21, 200, 450, 12) + _arc(0.48, 0.7, 0.26, 0.22, -90, 160, 12)],
    4: [[(0.52, 0.07), (0.22, 0.6), (0.84, 0.6)], [(0.66, 0.32), (0.62, 0.94)]],
    5: [[(0.76, 0.08), (0.32, 0.08), (0.28, 0.45), *_arc(0.48, 0.66, 0.26, 0.24, -120, 150, 12)]],
    6: [[(0.66, 0.07), (0.4, 0.35), (0.28, 0.66), *_arc(0.5, 0.7, 0.22, 0.22, 180, 540, 16)]],
    7: [[(0.2, 0.1), (0.8, 0.1), (0.42, 0.93)], [(0.36, 0.5), (0.72, 0.5)]],
    8: [_eight()],
    9: [[*_arc(0.5, 0.3, 0.23, 0.21, 0, 360, 16), (0.7, 0.55), (0.62, 0.93)]],
}
