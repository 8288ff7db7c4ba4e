"""Digits rendered from Debian fonts, normalised as the service normalises uploads: extra
training data for the 8x8 digits models (``extra_train=rendered-digits-v1``, ``-v2`` or ``-v6``).

scikit-learn's digits are the hands of 43 NIST writers; people photograph and draw digits in
other hands. This source draws each digit 0..9 in 46 faces from 25 Debian font packages
(handwriting-like and ordinary; ``-v2`` adds 9 faces from 5 more packages and five Hershey
vector faces drawn as pen strokes with a random pen width and an unsteady hand, half of their
7s crossed, taken four times as often as a font face: training/datasets/hershey.py; ``-v6``
adds six hands from six more packages), with
per-image variation that normalisation cannot undo or that tests it: size, stroke width, slant,
width, rotation (+-15 degrees), elastic distortion (the wobble of a hand), position, blur, sensor
noise, JPEG compression, and both polarities (dark ink on light paper, light strokes on a dark
canvas).
Every image then goes through the model's normalisation (``digits-v1`` or ``digits-v2``,
`jem.normalize.normalize`; the one the data set's spec names, `TrainConfig.normalization`), the
function `jem.imaging.to_pixels` applies to a greyscale request under 512 px, which these images
are (tests/training check that the pixels are the service's): 8x8 block counts on the data set's
0..16 scale, stored as 0..255 like the data set's own images.

The fonts are disjoint, by package and by family, from both font sets of the rendered-digits
acceptance test (tests/rendered_digits.py: TEST_FONTS for the test, VALIDATION_FONTS for the
choices), so neither measures a face the model was trained on. The images join the *training*
split only: the data set's validation and test splits stay exactly the images they were.

Versioned: ``rendered-digits-v1``, ``-v2`` and ``-v6`` are each a face list and a renderer; change
either and the name changes. Seeded: the same (per_class, seed) and the same font files give
the same images; the record (`RenderedDigits.record`) lists the packages, their versions, font
file hashes, the seed and the counts, and is stored in every manifest trained with it
(``training.split``).
The font list and the renderer of one image are in training/datasets/digit_rendering.py.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jem.normalize import normalize
from training.data import DIGITS_SPEC, Dataset, DatasetError, LabeledImages
from training.datasets.digit_rendering import (
    FONTS,
    HAND_FONTS,
    MORE_FONTS,
    STROKE_FONTS,
    missing_packages,
    render_one,
)
from training.datasets.npm_fonts import NPM_HANDS, npm_version
from training.datasets.provenance import file_sha256, package_version

__all__ = [
    "NAME",
    "SOURCES",
    "RenderedDigits",
    "RenderedDigitsError",
    "add_to_training_split",
    "build_rendered_digits",
    "load_rendered_digits",
]

log = logging.getLogger("training")
NAME = "rendered-digits-v1"
# source name -> its Debian packages' faces, and how often each pen-stroke face is taken
SOURCES: dict[str, tuple[dict[str, tuple[str, ...]], int]] = {
    NAME: (FONTS, 0),
    "rendered-digits-v2": ({**FONTS, **MORE_FONTS, **STROKE_FONTS}, 4),
    # six more hands (v3 to v5 were screening sources, never shipped: docs/training.md)
    "rendered-digits-v6": ({**FONTS, **MORE_FONTS, **HAND_FONTS, **STROKE_FONTS}, 4),
    # v6 and 95 handwriting faces of Google Fonts from npm, vendored (issue 17, twelfth round)
    "rendered-digits-v7": ({**FONTS, **MORE_FONTS, **HAND_FONTS, **NPM_HANDS, **STROKE_FONTS}, 4),
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


def _source(name: str) -> dict[str, tuple[str, ...]]:
    if name not in SOURCES:
        raise DatasetError(f"unknown rendered digits {name!r}; known: {', '.join(SOURCES)}")
    return SOURCES[name][0]


def _faces(name: str) -> list[str]:
    """The faces in the order the rounds take them: font faces, then each stroke face
    (``.jhf``) as many times as the source weighs it."""
    paths = [path for paths in _source(name).values() for path in paths]
    strokes = [path for path in paths if path.endswith(".jhf")] * SOURCES[name][1]
    return [path for path in paths if not path.endswith(".jhf")] + strokes


def _font_hashes(name: str = NAME) -> dict[str, dict[str, str]]:
    """Debian package -> {face file name: sha256}, for the record and the cache's check."""
    return {
        pkg: {Path(p).name: file_sha256(p) for p in paths} for pkg, paths in _source(name).items()
    }


def build_rendered_digits(
    per_class: int, seed: int = 0, normalization: str = "digits-v1", source: str = NAME
) -> RenderedDigits:
    """``per_class`` images of each digit, the faces of ``source`` (a `SOURCES` name) taken in
    turn; seeded by ``seed``; each normalised by ``normalization`` (a
    `jem.normalize.NORMALIZATIONS` name).

    Raises RenderedDigitsError when a font package is missing, DatasetError for an unknown
    source, ValueError for per_class < 1. Images whose normalisation finds no ink (thin strokes
    blurred away) are left out and counted in the record.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    missing = missing_packages(_source(source))
    if missing:
        raise RenderedDigitsError(
            f"{source}: fonts missing: install {' '.join(missing)} (make system-deps)"
        )
    faces = _faces(source)
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
        "name": source,
        "seed": seed,
        "per_class": per_class,
        "count": len(labels),
        "dropped_no_ink": 10 * per_class - len(labels),
        "normalization": normalization,
        "fonts": {
            pkg: {"version": npm_version(pkg) or package_version(pkg), "files": files}
            for pkg, files in _font_hashes(source).items()
        },
    }
    return RenderedDigits(
        np.stack(images).astype(np.uint8),
        np.asarray(labels, dtype=np.int64),
        record,
        np.asarray(rounds, dtype=np.int64),
    )


def load_rendered_digits(
    per_class: int,
    seed: int = 0,
    cache: Path | None = None,
    normalization: str = "digits-v1",
    source: str = NAME,
) -> RenderedDigits:
    """`build_rendered_digits`, kept in ``cache`` (default ``data/cache``) as an .npz beside its
    record: rendering and normalising costs about 12 ms an image on one core (the digits
    presets' 3,000 of ``rendered-digits-v2``: 37 s; docs/training.md). A cached build of as
    many or more images per class with the same seed and normalisation serves (its prefix), but
    only while its record's font hashes match the installed files."""
    cache = cache if cache is not None else Path("data/cache")
    fonts = _font_hashes(source)
    for record_path in sorted(cache.glob(f"{source}-*-{seed}.json")):
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
    log.info(
        "rendering %d images of %s once (about 12 ms each on one core), kept in %s",
        10 * per_class,
        source,
        cache,
    )
    built = build_rendered_digits(per_class, seed, normalization, source)
    cache.mkdir(parents=True, exist_ok=True)
    stem = cache / f"{source}-{normalization}-{per_class}-{seed}"
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
    source: str = NAME,
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
        raise DatasetError(f"{source} extends the 8x8 digits data set only, not {dataset.name!r}")
    extra = load_rendered_digits(per_class, seed, cache, normalization, source)
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
