"""Handwritten digit allographs as pen strokes: the common ways people draw each digit, as
centre lines in a 6 x 10 box (font units as in training/datasets/hershey.py: y down), drawn by
`training.datasets.hershey.draw_strokes` with a random pen and an unsteady hand. A face of
``rendered-digits-v3`` (training/datasets/digit_rendering.py).

Font faces draw one shape per digit, and the forms of school and everyday handwriting that no
training face draws are what the models missed on the validation fonts (docs/training.md): a 4
closed at the top or open, a 6 with a looped or a straight stem, a flat-topped 3, a 7 with a
serif or a curved stem, a 1 with a flag and a base, a 9 with a straight or a hooked tail, a
single-stroke 8. The variants are the allograph classes of handwriting-recognition
literature (e.g. Vuurpijl & Schomaker 1997, "Finding structure in diversity: a hierarchical
clustering method for the categorization of allographs in handwriting"), written here as
polylines; one is taken at random for each image. Change a variant and the data set's name
changes (the file's hash is in the data set's record).
"""

from __future__ import annotations

import numpy as np

from training.datasets.hershey import Strokes

__all__ = ["ALLOGRAPHS", "allograph"]


def _arc(
    cx: float, cy: float, rx: float, ry: float, a0: float, a1: float
) -> list[tuple[float, float]]:
    """Points of an elliptic arc from angle ``a0`` to ``a1`` degrees (0 = right, 90 = down)."""
    angles = np.radians(np.linspace(a0, a1, max(4, int(abs(a1 - a0) / 15) + 1)))
    return [(cx + rx * float(np.cos(a)), cy + ry * float(np.sin(a))) for a in angles]


# digit -> its variants, each a list of pen-down polylines
ALLOGRAPHS: dict[int, tuple[Strokes, ...]] = {
    0: ([_arc(3, 5, 3, 5, -90, 270)], [_arc(3, 5, 2.6, 5, -60, 310)]),
    1: (
        [[(3, 0), (3, 10)]],
        [[(1.2, 2.2), (3, 0), (3, 10)]],
        [[(1.2, 2.2), (3, 0), (3, 10)], [(1, 10), (5, 10)]],
    ),
    2: (
        [[*_arc(3, 3, 3, 3, 200, 380), (0, 10), (6, 10)]],
        [[*_arc(3, 3, 3, 3, 200, 370), (0.8, 9.5), *_arc(1.6, 9.2, 0.8, 0.8, 180, 450), (6, 10)]],
    ),
    3: (
        [[*_arc(3, 2.6, 2.8, 2.6, 200, 450), *_arc(3, 7.5, 3, 2.5, 270, 520)]],
        [[(0.5, 0), (5.5, 0), (2.5, 4), *_arc(3, 7, 3, 3, 250, 520)]],
    ),
    4: (
        [[(4.5, 10), (4.5, 0), (0, 7), (6, 7)]],
        [[(1.5, 0), (0.5, 6.5), (6, 6.5)], [(4.5, 2), (4.5, 10)]],
        [[(2.5, 0), (0, 6.5), (6, 6.5)], [(4.5, 3.5), (4.5, 10)]],
    ),
    5: (
        [[(5.5, 0), (1, 0), (0.6, 4.2)], [(0.6, 4.2), *_arc(2.8, 6.8, 3, 3.2, 235, 490)]],
        [[(5.5, 0), (1, 0), (0.6, 4.2), *_arc(2.8, 6.8, 3, 3.2, 235, 490)]],
    ),
    6: (
        [[(4.5, 0), (1.2, 4), (0.2, 7)], _arc(3, 7.3, 2.8, 2.7, 0, 360)],
        [
            [
                (5, 0.3),
                (3, 0.8),
                (1.3, 2.5),
                (0.4, 5),
                (0.5, 7.8),
                (1.8, 9.6),
                (3.5, 10),
                (5.2, 9),
                (5.7, 7.5),
                (5, 6),
                (3.3, 5.4),
                (1.5, 6),
                (0.6, 7.2),
            ]
        ],
        [
            [
                (4.5, 0),
                (2.5, 2),
                (1, 5),
                (0.7, 8),
                (2, 9.8),
                (4, 9.7),
                (5, 8.3),
                (4.2, 6.8),
                (2.5, 6.7),
                (1, 8),
            ]
        ],
    ),
    7: (
        [[(0, 0), (6, 0), (2, 10)]],
        [[(0, 1.5), (0.3, 0), (6, 0), (3, 10)]],
        [[(0, 0), (6, 0), (4, 4), (3, 7), (2.6, 10)]],
    ),
    8: (
        [_arc(3, 2.6, 2.4, 2.6, 0, 360), _arc(3, 7.4, 3, 2.6, 0, 360)],
        [
            [
                (5, 1.5),
                (3, 0),
                (1, 1.5),
                (1.5, 3.5),
                (4.5, 6),
                (5, 8.5),
                (3, 10),
                (1, 8.5),
                (1.5, 6),
                (4.5, 3.5),
                (5, 1.5),
            ]
        ],
    ),
    9: (
        [_arc(3, 3, 2.8, 3, 0, 360), [(5.8, 3), (5.8, 10)]],
        [_arc(3, 3, 2.8, 3, 0, 360), [(5.8, 3), (5.5, 7), (3.5, 10)]],
        [[*_arc(3, 3, 2.8, 3, 0, -360), (5.8, 3), (5.5, 10)]],
    ),
}


def allograph(rng: np.random.Generator, digit: int) -> Strokes:
    """One of the digit's variants, uniformly at random."""
    variants = ALLOGRAPHS[digit]
    return variants[int(rng.integers(len(variants)))]
