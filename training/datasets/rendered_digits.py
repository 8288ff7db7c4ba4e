"""Digits rendered from Debian fonts, normalised as the service normalises uploads: extra
training data for the 8x8 digits models (``extra_train=rendered-digits-v1``).

scikit-learn's digits are the hands of 43 NIST writers; people photograph and draw digits in
other hands. This source draws each digit 0..9 in 46 faces from 25 Debian font packages
(handwriting-like and ordinary), with per-image variation that normalisation cannot undo or that
tests it: size, stroke width, slant, width, rotation (+-15 degrees), elastic distortion (the
wobble of a hand), position, blur, sensor noise, JPEG compression, and both polarities (dark ink
on light paper, light strokes on a dark canvas).
Every image then goes through the model's normalisation (``digits-v1`` or ``digits-v2``,
`jem.normalize.normalize`; the one the data set's spec names, `TrainConfig.normalization`), the
function `jem.imaging.to_pixels` applies to a greyscale request under 512 px, which these images
are (tests/training check that the pixels are the service's): 8x8 block counts on the data set's
0..16 scale, stored as 0..255 like the data set's own images.

The fonts are disjoint, by package and by family, from both font sets of the rendered-digits
acceptance test (tests/rendered_digits.py: TEST_FONTS for the test, VALIDATION_FONTS for the
choices), so neither measures a face the model was trained on. The images join the *training*
split only: the data set's validation and test splits stay exactly the images they were.

Versioned: ``rendered-digits-v1`` is this font list and this renderer; change either and the
name changes. Seeded: the same (per_class, seed) and the same font files give the same images;
the record (`RenderedDigits.record`) lists the packages, their versions, font file hashes, the
seed and the counts, and is stored in every manifest trained with it (``training.split``).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage

from jem.normalize import normalize
from training.data import DIGITS_SPEC, Dataset, DatasetError, LabeledImages
from training.datasets.provenance import file_sha256, package_version

__all__ = [
    "FONTS",
    "NAME",
    "RenderedDigits",
    "RenderedDigitsError",
    "add_to_training_split",
    "build_rendered_digits",
    "load_rendered_digits",
]

NAME = "rendered-digits-v1"

_TT, _OT = "/usr/share/fonts/truetype", "/usr/share/fonts/opentype"
# Debian package -> its faces used (every file must exist: `make system-deps` installs them)
FONTS: dict[str, tuple[str, ...]] = {
    "fonts-dancingscript": (
        f"{_OT}/dancingscript/DancingScript-Regular.otf",
        f"{_OT}/dancingscript/DancingScript-Bold.otf",
    ),
    "fonts-kristi": (f"{_TT}/kristi/Kristi.ttf",),
    "fonts-ecolier-court": (f"{_TT}/ecolier-court/Ecolier-court.ttf",),
    "fonts-kaushanscript": (f"{_OT}/kaushanscript/KaushanScript-Regular.otf",),
    "fonts-tlwg-purisa-ttf": (
        f"{_TT}/tlwg/Purisa.ttf",
        f"{_TT}/tlwg/Purisa-Bold.ttf",
        f"{_TT}/tlwg/Purisa-Oblique.ttf",
    ),
    "fonts-staypuft": (f"{_TT}/staypuft/StayPuft.ttf",),
    "fonts-fantasque-sans": (
        f"{_TT}/fantasque-sans/Normal/TTF/FantasqueSansMono-Regular.ttf",
        f"{_TT}/fantasque-sans/Normal/TTF/FantasqueSansMono-Italic.ttf",
    ),
    "fonts-sil-andika": (f"{_TT}/andika/Andika-Regular.ttf", f"{_TT}/andika/Andika-Italic.ttf"),
    "fonts-liberation": (
        f"{_TT}/liberation/LiberationSans-Regular.ttf",
        f"{_TT}/liberation/LiberationSans-Italic.ttf",
        f"{_TT}/liberation/LiberationSerif-Regular.ttf",
        f"{_TT}/liberation/LiberationMono-Regular.ttf",
    ),
    "fonts-freefont-ttf": (
        f"{_TT}/freefont/FreeSans.ttf",
        f"{_TT}/freefont/FreeSerif.ttf",
        f"{_TT}/freefont/FreeSerifItalic.ttf",
        f"{_TT}/freefont/FreeMono.ttf",
    ),
    "fonts-gnutypewriter": (f"{_TT}/gnutypewriter/GNUTypewriter.ttf",),
    "fonts-averia-gwf": (
        f"{_TT}/averia-gwf/AveriaGWF-Regular.ttf",
        f"{_TT}/averia-gwf/AveriaGWF-Italic.ttf",
    ),
    "fonts-cabinsketch": (f"{_TT}/cabinsketch/CabinSketch-Regular.ttf",),
    "fonts-isabella": (f"{_TT}/isabella/Isabella.ttf",),
    "fonts-quicksand": (
        f"{_TT}/quicksand/Quicksand-Regular.ttf",
        f"{_TT}/quicksand/Quicksand-Bold.ttf",
    ),
    "fonts-klee": (f"{_TT}/klee/KleeOne-Regular.ttf", f"{_TT}/klee/KleeOne-SemiBold.ttf"),
    "fonts-leckerli-one": (f"{_TT}/leckerli-one/LeckerliOne-Regular.ttf",),
    "fonts-sjfonts": (f"{_TT}/sjfonts/Delphine.ttf", f"{_TT}/sjfonts/SteveHand.ttf"),
    "fonts-yusei-magic": (f"{_TT}/yusei-magic/YuseiMagic-Regular.ttf",),
    "fonts-tomsontalks": (f"{_TT}/tomsontalks/TomsonTalks.ttf",),
    "fonts-nanum-extra": (
        f"{_TT}/nanum/NanumPen.ttf",
        f"{_TT}/nanum/NanumBrush.ttf",
        f"{_TT}/nanum/NanumBarunpenR.ttf",
    ),
    "fonts-seto": (f"{_TT}/seto/setofont.ttf",),
    "fonts-kiloji": (f"{_TT}/kiloji/kiloji.ttf", f"{_TT}/kiloji/kiloji_b.ttf"),
    "fonts-havana": (f"{_OT}/havana/Havana-Regular.otf",),
    "fonts-dustin": (
        f"{_TT}/dustin/Domestic_Manners.ttf",
        f"{_TT}/dustin/It_wasn_t_me.ttf",
        f"{_TT}/dustin/Junkyard.ttf",
        f"{_TT}/dustin/Dustismo.ttf",
    ),
}


class RenderedDigitsError(DatasetError):
    """A font file is missing (install its Debian package: `make system-deps`)."""


@dataclass(frozen=True)
class RenderedDigits:
    """``images``: uint8 (N, 8, 8, 1), ink bright, 0..255 = 0..16 block counts; ``labels``:
    int64 (N,); ``record``: where they came from (JSON-serialisable)."""

    images: np.ndarray[Any, Any]
    labels: np.ndarray[Any, Any]
    record: dict[str, Any]
    rounds: np.ndarray[Any, Any]  # int64 (N,): the round (0..per_class-1) each image was drawn in

    def prefix(self, per_class: int) -> RenderedDigits:
        """What `build_rendered_digits(per_class, same seed)` gives: the first rounds."""
        keep = self.rounds < per_class
        count = int(keep.sum())
        record = {**self.record, "per_class": per_class, "count": count}
        record["dropped_no_ink"] = 10 * per_class - count
        return RenderedDigits(self.images[keep], self.labels[keep], record, self.rounds[keep])


def missing_packages() -> list[str]:
    return sorted(pkg for pkg, paths in FONTS.items() if not all(Path(p).is_file() for p in paths))


def _glyph(font: ImageFont.FreeTypeFont, digit: int, stroke: int) -> Image.Image:
    """The digit as an L mask (255 = ink) with room around it for rotation and slant."""
    left, top, right, bottom = (int(v) for v in font.getbbox(str(digit), stroke_width=stroke))
    pad = max(right - left, bottom - top) // 2 + 4
    mask = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(mask).text(
        (pad - left, pad - top), str(digit), fill=255, font=font, stroke_width=stroke
    )
    return mask


def _elastic(mask: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    """Simard et al.'s (2003) elastic distortion, the classic stand-in for the wobble of a hand:
    a random displacement field smoothed over 12% of the glyph, its standard deviation
    ``strength`` times the glyph's size."""
    ink = np.asarray(mask, dtype=np.float64)
    size = max(ink.shape)
    fields = [ndimage.gaussian_filter(rng.uniform(-1, 1, ink.shape), 0.12 * size) for _ in "xy"]
    rows, cols = np.meshgrid(np.arange(ink.shape[0]), np.arange(ink.shape[1]), indexing="ij")
    coords = [
        grid + field * (strength * size / max(float(field.std()), 1e-9))
        for grid, field in zip((rows, cols), fields, strict=True)
    ]
    warped = ndimage.map_coordinates(ink, coords, order=1, mode="constant")
    return Image.fromarray(np.clip(np.round(warped), 0, 255).astype(np.uint8), "L")


def render_one(rng: np.random.Generator, font_path: str, digit: int) -> Image.Image:
    """One digit image (greyscale, about 40..300 px a side), either polarity, as a camera or a
    drawing app gives it."""
    height = int(rng.integers(32, 120))
    font = ImageFont.truetype(font_path, size=height)
    mask = _glyph(font, digit, int(rng.integers(0, height // 20 + 1)))
    w, h = mask.size
    stretch = float(rng.uniform(0.8, 1.2))  # narrower or wider hands
    shear = float(rng.uniform(-0.25, 0.25))  # slant, either way
    mask = mask.transform(
        (w, h),
        Image.Transform.AFFINE,
        (1 / stretch, shear, -shear * h / 2 + w / 2 * (1 - 1 / stretch), 0, 1, 0),
        resample=Image.Resampling.BILINEAR,
    )
    mask = mask.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
    mask = _elastic(mask, rng, float(rng.uniform(0.0, 0.03)))
    box = mask.getbbox()
    if box is not None:
        mask = mask.crop(box)
    margin = rng.integers(4, 60, size=4)  # left, top, right, bottom: off-centre
    canvas = np.zeros((mask.height + margin[1] + margin[3], mask.width + margin[0] + margin[2]))
    canvas[margin[1] : margin[1] + mask.height, margin[0] : margin[0] + mask.width] = (
        np.asarray(mask, dtype=np.float64) / 255.0
    )
    ink_image = Image.fromarray(np.round(canvas * 255).astype(np.uint8), "L")
    blur = ImageFilter.GaussianBlur(float(rng.uniform(0.0, 0.03)) * height)
    ink = np.asarray(ink_image.filter(blur))
    ink = ink.astype(np.float64) / 255.0
    if rng.random() < 0.5:  # dark ink on paper lit unevenly
        paper = rng.uniform(170, 245) + np.linspace(0, 1, ink.shape[1])[None] * rng.uniform(-30, 30)
        grey = paper * (1 - ink) + rng.uniform(0, 100) * ink
    else:  # light strokes on a dark canvas
        grey = rng.uniform(0, 60) * (1 - ink) + rng.uniform(180, 255) * ink
    grey = grey + rng.normal(0.0, rng.uniform(0, 6), size=grey.shape)
    image = Image.fromarray(np.clip(np.round(grey), 0, 255).astype(np.uint8), "L")
    if rng.random() < 0.5:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(rng.integers(60, 95)))
        image = Image.open(io.BytesIO(buffer.getvalue()))
    return image


def _font_hashes() -> dict[str, dict[str, str]]:
    """Debian package -> {face file name: sha256}, for the record and the cache's check."""
    return {pkg: {Path(p).name: file_sha256(p) for p in paths} for pkg, paths in FONTS.items()}


def build_rendered_digits(
    per_class: int, seed: int = 0, normalization: str = "digits-v1"
) -> RenderedDigits:
    """``per_class`` images of each digit, the faces taken in turn; seeded by ``seed``; each
    normalised by ``normalization`` (a `jem.normalize.NORMALIZATIONS` name).

    Raises RenderedDigitsError when a font package is missing, ValueError for per_class < 1.
    Images whose normalisation finds no ink (thin strokes blurred away) are left out and
    counted in the record.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    missing = missing_packages()
    if missing:
        raise RenderedDigitsError(
            f"{NAME}: fonts missing: install {' '.join(missing)} (make system-deps)"
        )
    faces = [path for paths in FONTS.values() for path in paths]
    rng = np.random.default_rng([seed, 17])
    images, labels, rounds = [], [], []
    # round by round (each digit once per round), so a smaller build is a prefix of a larger one
    for i in range(per_class):
        for digit in range(10):
            image = np.asarray(render_one(rng, faces[(i + digit) % len(faces)], digit))
            pixels = normalize(normalization, image, DIGITS_SPEC.height, DIGITS_SPEC.width)
            if pixels is None:  # no ink found: to_pixels would resize it plainly
                continue
            images.append(pixels[..., None])
            labels.append(digit)
            rounds.append(i)
    record = {
        "name": NAME,
        "seed": seed,
        "per_class": per_class,
        "count": len(labels),
        "dropped_no_ink": 10 * per_class - len(labels),
        "normalization": normalization,
        "fonts": {
            pkg: {"version": package_version(pkg), "files": files}
            for pkg, files in _font_hashes().items()
        },
    }
    return RenderedDigits(
        np.stack(images).astype(np.uint8),
        np.asarray(labels, dtype=np.int64),
        record,
        np.asarray(rounds, dtype=np.int64),
    )


def load_rendered_digits(
    per_class: int, seed: int = 0, cache: Path | None = None, normalization: str = "digits-v1"
) -> RenderedDigits:
    """`build_rendered_digits`, kept in ``cache`` (default ``data/cache``) as an .npz beside its
    record: rendering and normalising costs about 30 ms an image on one core (6,000 in three
    minutes). A cached build of as many or more images per class with the same seed and
    normalisation serves (its prefix), but only while its record's font hashes match the
    installed files."""
    cache = cache if cache is not None else Path("data/cache")
    fonts = _font_hashes()
    for record_path in sorted(cache.glob(f"{NAME}-*-{seed}.json")):
        record = json.loads(record_path.read_text())
        arrays_path = record_path.with_suffix(".npz")
        if record.get("per_class", 0) < per_class or not arrays_path.is_file():
            continue
        if record.get("normalization") != normalization:
            continue
        if {pkg: v["files"] for pkg, v in record["fonts"].items()} == fonts:
            with np.load(arrays_path) as a:
                cached = RenderedDigits(a["images"], a["labels"], record, a["rounds"])
            return cached.prefix(per_class)
    built = build_rendered_digits(per_class, seed, normalization)
    cache.mkdir(parents=True, exist_ok=True)
    stem = cache / f"{NAME}-{normalization}-{per_class}-{seed}"
    np.savez_compressed(
        stem.with_suffix(".npz"), images=built.images, labels=built.labels, rounds=built.rounds
    )
    stem.with_suffix(".json").write_text(json.dumps(built.record, indent=2) + "\n")
    return built


def add_to_training_split(
    dataset: Dataset,
    per_class: int,
    seed: int = 0,
    cache: Path | None = None,
    *,
    real_repeat: int = 1,
) -> Dataset:
    """``dataset`` (scikit-learn's digits) with rendered digits appended to its train split only;
    validation and test are untouched, and so is the split's fingerprint. The data set's own
    training images are repeated ``real_repeat`` times (so an epoch, and a batch on average,
    holds them in that proportion to the rendered ones). The record goes to
    ``dataset.split["extra_train"]`` (and so into the manifest). DatasetError for another data
    set or missing fonts.
    """
    normalization = dataset.spec.normalization
    if normalization is None or dataset.spec.height != 8:
        raise DatasetError(f"{NAME} extends the 8x8 digits data set only, not {dataset.name!r}")
    extra = load_rendered_digits(per_class, seed, cache, normalization)
    real = dataset.train
    train = LabeledImages(
        torch.cat([real.images.repeat(real_repeat, 1, 1, 1), torch.from_numpy(extra.images)]),
        torch.cat([real.labels.repeat(real_repeat), torch.from_numpy(extra.labels)]),
        real.spec,
    )
    split = {**dataset.split, "extra_train": {**extra.record, "real_repeat": real_repeat}}
    return Dataset(
        dataset.name, train, dataset.val, dataset.test, dataset.class_names, dataset.spec, split
    )
