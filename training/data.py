"""Data sets as uint8 images plus labels, split once, seeded and stratified.

Every data set is held as ``uint8`` arrays of shape ``(N, H, W, C)`` and turned into model inputs
in ``[-1, 1]`` through :func:`jem.uint8_to_tensor`, the same contract the service uses on uploads.
Only :attr:`Dataset.train` is ever handed to the training loop; ``val`` drives validation,
calibration and the divergence guard, ``test`` is for the final report. The data sets read
from disk (CIFAR, SVHN, image folders) are built in training/data_sources.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

from jem import InputSpec, uint8_to_tensor

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetError",
    "FolderOptions",
    "LabeledImages",
    "dataset_from_arrays",
    "dataset_from_train_test",
    "load_dataset",
    "stratified_split",
]

# digits-v1: uploads (and folder images) become 8x8 digits as scikit-learn's were made
DIGITS_SPEC = InputSpec(
    channels=1, height=8, width=8, color_mode="L", resample="box", normalization="digits-v1"
)
RGB32_SPEC = InputSpec(channels=3, height=32, width=32, color_mode="RGB", resample="bilinear")

# a stratified 60/20/20 split needs at least two images of every class in the held-out 40%,
# and then two in each of validation and test
MIN_PER_CLASS = 5


class DatasetError(Exception):
    """A data set is unknown, missing on disk, or malformed."""


@dataclass(frozen=True)
class FolderOptions:
    """How `folder` images become model pixels (the `TrainConfig` keys of the same names)."""

    image_size: tuple[int, ...] = (32, 32)  # (height, width) or (side,)
    color_mode: str = "auto"  # "auto": "L" when every image is greyscale, else "RGB"
    resample: str = "bilinear"
    background: str = "auto"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FolderOptions:
        keys = ("image_size", "color_mode", "resample", "background")
        values = {k: config[k] for k in keys if k in config}
        if "image_size" in values:
            values["image_size"] = tuple(int(v) for v in values["image_size"])
        return cls(**values)


@dataclass(frozen=True)
class LabeledImages:
    """``images``: uint8 ``(N, H, W, C)``; ``labels``: int64 ``(N,)``."""

    images: Tensor
    labels: Tensor
    spec: InputSpec

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def inputs(self, index: Tensor | None = None) -> Tensor:
        """Model inputs in [-1, 1], shape (N, C, H, W), optionally only rows ``index``."""
        images = self.images if index is None else self.images[index]
        return uint8_to_tensor(images, self.spec)

    def subset(self, index: np.ndarray | Tensor) -> LabeledImages:
        index_t = torch.as_tensor(index, dtype=torch.long)
        return LabeledImages(self.images[index_t], self.labels[index_t], self.spec)


@dataclass(frozen=True)
class Dataset:
    name: str
    train: LabeledImages
    val: LabeledImages
    test: LabeledImages
    class_names: list[str]
    spec: InputSpec
    split: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def indices_sha256(*parts: np.ndarray) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def stratified_split(
    labels: np.ndarray, fractions: tuple[float, float], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``range(len(labels))`` into (train, val, test) with per-class proportions kept.

    ``fractions`` are the (val, test) shares; the rest is train. Deterministic in ``seed``.
    """
    val_frac, test_frac = fractions
    if not (0 < val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise DatasetError(f"invalid split fractions val={val_frac}, test={test_frac}")
    index = np.arange(len(labels))
    held = val_frac + test_frac
    train, rest = train_test_split(index, test_size=held, stratify=labels, random_state=seed)
    if test_frac == 0:
        return np.sort(train), np.sort(rest), np.array([], dtype=np.int64)
    val, test = train_test_split(
        rest, test_size=test_frac / held, stratify=labels[rest], random_state=seed
    )
    return np.sort(train), np.sort(val), np.sort(test)


def dataset_from_arrays(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    spec: InputSpec,
    seed: int,
    fractions: tuple[float, float],
) -> Dataset:
    """A data set from one pool of (N, H, W, C) uint8 images and their labels, split stratified
    and seeded into train/validation/test by ``fractions`` (validation, test). DatasetError when
    there is one class, or a class has too few images to split."""
    if len(class_names) < 2:
        raise DatasetError(
            f"{name}: one class ({', '.join(map(repr, class_names))}); a classifier needs at "
            "least two: one sub-folder per class (images to refuse go to --ood, not here)"
        )
    counts = np.bincount(labels, minlength=len(class_names))
    small = [f"{class_names[k]!r} ({int(n)})" for k, n in enumerate(counts) if n < MIN_PER_CLASS]
    if small:
        raise DatasetError(
            f"{name}: classes with fewer than {MIN_PER_CLASS} images, too few for a stratified "
            f"train/validation/test split: {', '.join(small)}; add images or remove the class"
        )
    try:
        train, val, test = stratified_split(labels, fractions, seed)
    except ValueError as exc:  # scikit-learn names classes by index: name them
        fewest = ", ".join(f"{class_names[k]!r} ({int(counts[k])})" for k in np.argsort(counts)[:3])
        raise DatasetError(
            f"{name}: cannot split {len(labels)} images stratified by class with val_fraction="
            f"{fractions[0]}, test_fraction={fractions[1]} (smallest classes: {fewest}): {exc}"
        ) from None
    full = LabeledImages(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), spec)
    split = {
        "seed": seed,
        "method": "stratified train_test_split",
        "sizes": {"train": len(train), "val": len(val), "test": len(test)},
        "indices_sha256": indices_sha256(train, val, test),
    }
    return Dataset(
        name, full.subset(train), full.subset(val), full.subset(test), class_names, spec, split
    )


def dataset_from_train_test(
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    class_names: list[str],
    spec: InputSpec,
    seed: int,
    val_fraction: float,
) -> Dataset:
    """Official train/test sets: validation is carved out of train, stratified and seeded."""
    images, labels = train
    fit, val, _ = stratified_split(labels, (val_fraction, 0.0), seed)
    full = LabeledImages(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), spec)
    test_set = LabeledImages(
        torch.from_numpy(test[0]), torch.from_numpy(test[1].astype(np.int64)), spec
    )
    split = {
        "seed": seed,
        "method": "official test set; stratified validation carved from train",
        "sizes": {"train": len(fit), "val": len(val), "test": len(test_set)},
        "indices_sha256": indices_sha256(fit, val),
    }
    return Dataset(name, full.subset(fit), full.subset(val), test_set, class_names, spec, split)


def load_digits_dataset(seed: int = 0, fractions: tuple[float, float] = (0.2, 0.2)) -> Dataset:
    """scikit-learn's 1797 8x8 digits; pixel values 0..16 scaled to 0..255."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.asarray(bunch.data, dtype=np.float64).reshape(-1, 8, 8, 1)
    images = np.round(pixels * 255.0 / 16.0).clip(0, 255).astype(np.uint8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    names = [str(k) for k in range(10)]
    return dataset_from_arrays("digits", images, labels, names, DIGITS_SPEC, seed, fractions)


DATASETS: tuple[str, ...] = ("digits", "cifar10", "cifar100", "svhn", "folder")


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    download: bool = False,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    spec: InputSpec | None = None,
    folder: FolderOptions | None = None,
) -> Dataset:
    """Load a data set by name. ``root`` is required for everything but ``digits``.

    ``folder`` reads ``root/<class>/<image>`` (any suffix in ``readers.IMAGE_SUFFIXES``) and
    converts every image per ``spec``, or when that is None per the spec ``folder`` options
    give (default: 32x32, RGB unless every image is greyscale, bilinear, transparent -> black);
    it logs what it found and the conversion. CIFAR and SVHN keep their official test sets and
    carve validation from train. Raises DatasetError (with the path or class folder at fault).
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    if name == "digits":
        return load_digits_dataset(seed, (val_fraction, test_fraction))
    if root is None:
        raise DatasetError(
            f"data set {name!r} needs a data root: --set data_root=PATH (or --data-root PATH)"
        )
    path = Path(root)
    if not path.exists() and not download:
        raise DatasetError(
            f"data root {path} does not exist (a data set this project builds, such as the"
            " emoji presets' data/emoji: python -m training data --help; your own images:"
            " docs/your-data.md)"
        )
    # the sources build on this module's Dataset and split: imported here, not at the top
    from training.data_sources import load_cifar, load_folder, load_svhn

    if name == "folder":
        options = folder or FolderOptions()
        return load_folder(path, spec, options, seed, (val_fraction, test_fraction))
    if name == "svhn":
        return load_svhn(path, download, seed, val_fraction)
    return load_cifar(path, download, seed, val_fraction, hundred=name == "cifar100")
