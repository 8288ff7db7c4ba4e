"""A small image folder of coloured shapes, made with Pillow: what a user's own data looks like.

Each class is a shape in its own colour at a random position, size and shade, drawn on a
transparent canvas (RGBA PNG) or, with `background`, flattened onto that colour (RGB PNG).
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

__all__ = ["SHAPES", "make_shapes_folder"]

SHAPES = {"circle": (220, 40, 40), "square": (40, 160, 40), "triangle": (40, 60, 220)}


def _draw(kind: str, colour: tuple[int, ...], size: int, rng: random.Random) -> Image.Image:
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    r = rng.uniform(0.25, 0.4) * size
    cx, cy = (rng.uniform(r, size - r) for _ in range(2))
    shade = rng.uniform(0.8, 1.0)
    fill = (*(int(c * shade) for c in colour), 255)
    if kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif kind == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    return image


def make_shapes_folder(
    root: Path,
    per_class: int = 12,
    *,
    size: int = 24,
    seed: int = 0,
    classes: dict[str, tuple[int, int, int]] | None = None,
    background: tuple[int, int, int] | None = None,
) -> Path:
    """``root/<shape>/<i>.png`` for each class; returns ``root``."""
    rng = random.Random(seed)
    for kind, colour in (classes or SHAPES).items():
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = kind if kind in SHAPES else rng.choice(list(SHAPES))
            image = _draw(shape, colour, size, rng)
            if background is not None:
                flat = Image.new("RGBA", image.size, (*background, 255))
                image = Image.alpha_composite(flat, image).convert("RGB")
            image.save(folder / f"{i:03d}.png")
    return root
