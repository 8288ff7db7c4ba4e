"""Colour emoji as a labelled image data set: Noto Color Emoji glyphs, classes = Unicode groups.

Sources (Debian packages, installed by ``make system-deps``):
- ``fonts-noto-color-emoji``: ``NotoColorEmoji.ttf``, a CBDT bitmap font whose glyphs are
  136x128 PNG strikes; FreeType only renders it at its strike size (109 px), with
  ``embedded_color=True``. Pillow's Raqm layout shapes ZWJ sequences and flags into one glyph.
- ``unicode-data``: ``emoji/emoji-test.txt`` (UTS #51), which lists every emoji with its group
  and qualification status.

What is kept: fully-qualified emoji only (the minimally- and unqualified forms are the same
pictures), no ``Component`` group, and no skin-tone variants (any code point in U+1F3FB..U+1F3FF):
a variant differs from its base emoji by its colour only, so keeping them would put near copies of
one picture on both sides of the train/test split. A sequence the font cannot draw as one glyph
(wider than one glyph cell) is left out and listed in the record.

Each glyph is drawn on transparency, composited on white, padded to a square, and resized with
Pillow's Lanczos filter to ``size`` x ``size`` RGB.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from training.datasets.provenance import file_sha256, package_version

__all__ = [
    "DEFAULT_EMOJI_TEST",
    "DEFAULT_FONT",
    "HELD_OUT_GROUPS",
    "EmojiBuildError",
    "EmojiEntry",
    "build_emoji_dataset",
    "parse_emoji_test",
    "render_emoji",
]

DEFAULT_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
DEFAULT_EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
FONT_PACKAGE, DATA_PACKAGE = "fonts-noto-color-emoji", "unicode-data"
STRIKE_SIZE = 109  # the only size FreeType renders NotoColorEmoji's bitmaps at
HELD_OUT_GROUPS = ("Food & Drink", "Activities", "Flags")  # near-OOD: emoji, but unseen groups
EXCLUDED_GROUPS = ("Component",)  # skin tones and hair styles on their own
SKIN_TONES = range(0x1F3FB, 0x1F400)
_LINE = re.compile(r"^([0-9A-F ]+?)\s*;\s*([a-z-]+)\s*#\s*\S+\s+E(\d+\.\d+)\s+(.*)$")


class EmojiBuildError(RuntimeError):
    """A source file is missing or not in the format expected."""


@dataclass(frozen=True)
class EmojiEntry:
    codepoints: tuple[int, ...]
    status: str  # fully-qualified, minimally-qualified, unqualified, component
    group: str
    subgroup: str
    name: str

    @property
    def text(self) -> str:
        return "".join(map(chr, self.codepoints))

    @property
    def file_stem(self) -> str:
        return "_".join(f"{c:04x}" for c in self.codepoints)

    @property
    def has_skin_tone(self) -> bool:
        return any(c in SKIN_TONES for c in self.codepoints)


def parse_emoji_test(lines: Iterable[str]) -> list[EmojiEntry]:
    """Entries of an ``emoji-test.txt`` in file order; raises EmojiBuildError if none parse."""
    group = subgroup = ""
    entries = []
    for raw in lines:
        line = raw.strip()
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif line and not line.startswith("#"):
            match = _LINE.match(line)
            if match is None:
                raise EmojiBuildError(f"emoji-test.txt: cannot parse line {line!r}")
            points = tuple(int(p, 16) for p in match.group(1).split())
            entries.append(EmojiEntry(points, match.group(2), group, subgroup, match.group(4)))
    if not entries:
        raise EmojiBuildError("emoji-test.txt: no emoji lines found")
    return entries


def slug(group: str) -> str:
    """``"Smileys & Emotion"`` -> ``"smileys-emotion"`` (a folder name)."""
    return re.sub(r"[^a-z0-9]+", "-", group.lower()).strip("-")


def render_emoji(font: ImageFont.FreeTypeFont, text: str, size: int) -> np.ndarray | None:
    """uint8 (size, size, 3) on white, or None when the font draws ``text`` as several glyphs."""
    left, top, right, bottom = (int(v) for v in font.getbbox(text))
    cell = font.getbbox("\U0001f600")  # one glyph's cell (136 x 128 at the strike size)
    if right - left > cell[2] - cell[0] or bottom - top > cell[3] - cell[1]:
        return None
    canvas = Image.new("RGBA", (right, bottom), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((0, 0), text, font=font, embedded_color=True)
    if canvas.getbbox() is None:  # nothing drawn
        return None
    side = max(canvas.size)
    square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    square.alpha_composite(canvas, ((side - canvas.width) // 2, (side - canvas.height) // 2))
    small = square.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.uint8)


def _split_held_out(stems: Sequence[str], seed: int) -> tuple[list[str], list[str]]:
    """Seeded halves of one held-out group: ``val`` for ``screen``, ``test`` for ``evaluate``."""
    order = np.random.default_rng(seed).permutation(len(stems))
    half = len(stems) // 2
    return sorted(stems[i] for i in order[:half]), sorted(stems[i] for i in order[half:])


def build_emoji_dataset(
    out: Path,
    *,
    size: int = 32,
    font_path: Path = DEFAULT_FONT,
    emoji_test: Path = DEFAULT_EMOJI_TEST,
    held_out: Sequence[str] = HELD_OUT_GROUPS,
    limit: int = 0,
    seed: int = 0,
    command: str = "",
) -> dict[str, Any]:
    """Write the data set under ``out`` and return its record (also ``out/train/dataset.json``).

    ``limit`` > 0 keeps the first ``limit`` emoji of each group (for quick tests). ``seed`` splits
    each held-out group into ``ood/val`` and ``ood/test`` halves. Raises EmojiBuildError when a
    source is missing or ``out`` already holds a data set.
    """
    for path, package in ((font_path, FONT_PACKAGE), (emoji_test, DATA_PACKAGE)):
        if not path.is_file():
            raise EmojiBuildError(
                f"{path} not found: install Debian's {package} (make system-deps) or pass its path"
            )
    if size < 8:
        raise EmojiBuildError(f"size must be >= 8, got {size}")
    if (out / "train").exists() or (out / "ood").exists():
        raise EmojiBuildError(
            f"{out} already holds a data set (train/ or ood/); choose a new --out"
        )
    entries = parse_emoji_test(emoji_test.read_text(encoding="utf-8").splitlines())
    groups = list(dict.fromkeys(e.group for e in entries))
    unknown = sorted(set(held_out) - set(groups))
    if unknown:
        raise EmojiBuildError(f"unknown held-out groups {unknown}; groups: {groups}")
    font = ImageFont.truetype(str(font_path), STRIKE_SIZE)
    excluded: Counter[str] = Counter()
    unrenderable: list[str] = []
    per_group: dict[str, list[tuple[EmojiEntry, np.ndarray]]] = {}
    for entry in entries:
        if entry.status != "fully-qualified" or entry.group in EXCLUDED_GROUPS:
            excluded[entry.status if entry.status != "fully-qualified" else entry.group] += 1
            continue
        if entry.has_skin_tone:
            excluded["skin-tone variant"] += 1
            continue
        kept = per_group.setdefault(entry.group, [])
        if limit and len(kept) >= limit:
            continue
        image = render_emoji(font, entry.text, size)
        if image is None:
            unrenderable.append(f"{entry.file_stem} {entry.name}")
            continue
        kept.append((entry, image))
    classes: dict[str, int] = {}
    ood: dict[str, dict[str, int]] = {}
    for group, items in per_group.items():
        if group in held_out:
            val, _ = _split_held_out([e.file_stem for e, _ in items], seed)
            parts = {"val": set(val)}
            for entry, image in items:
                part = "val" if entry.file_stem in parts["val"] else "test"
                _save(out / "ood" / part / slug(group) / f"{entry.file_stem}.png", image)
            ood[slug(group)] = {"val": len(val), "test": len(items) - len(val)}
        else:
            for entry, image in items:
                _save(out / "train" / slug(group) / f"{entry.file_stem}.png", image)
            classes[slug(group)] = len(items)
    record = {
        "name": "emoji",
        "command": command,
        "image": {"size": size, "mode": "RGB", "background": "white", "resample": "lanczos"},
        "classes": classes,
        "ood": ood,
        "ood_split_seed": seed,
        "limit_per_group": limit,
        "excluded": {**dict(sorted(excluded.items())), "unrenderable": unrenderable},
        "sources": {
            "font": {
                "package": FONT_PACKAGE,
                "version": package_version(FONT_PACKAGE),
                "path": str(font_path),
                "sha256": file_sha256(font_path),
            },
            "emoji_test": {
                "package": DATA_PACKAGE,
                "version": package_version(DATA_PACKAGE),
                "path": str(emoji_test),
                "sha256": file_sha256(emoji_test),
            },
        },
    }
    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "train" / "dataset.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def _save(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image, "RGB").save(path, optimize=True)
