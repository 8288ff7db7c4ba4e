"""Data sets as uint8 images plus labels, split once, seeded and stratified.

Every data set is held as ``uint8`` arrays of shape ``(N, H, W, C)`` and turned into model inputs
in ``[-1, 1]`` through :func:`jem.uint8_to_tensor`, the same contract the service uses on uploads.
Only :attr:`Dataset.train` is ever handed to the training loop; ``val`` drives validation,
calibration and the divergence guard, ``test`` is for the final report.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

from jem import InputSpec, uint8_to_tensor
from training.readers import (
    CifarLabels,
    FolderScan,
    FormatError,
    read_cifar_binary,
    read_image_folder,
    read_svhn_mat,
    scan_image_folder,
)

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetError",
    "FolderOptions",
    "LabeledImages",
    "folder_spec",
    "load_dataset",
    "stratified_split",
]

# digits-v1: uploads (and folder images) become 8x8 digits as scikit-learn's were made
DIGITS_SPEC = InputSpec(
    channels=1, height=8, width=8, color_mode="L", resample="box", normalization="digits-v1"
)
RGB32_SPEC = InputSpec(channels=3, height=32, width=32, color_mode="RGB", resample="bilinear")


log = logging.getLogger("training")

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


def folder_spec(scan: FolderScan, options: FolderOptions) -> InputSpec:
    """The input spec for a scanned folder; DatasetError on a bad setting."""
    size = options.image_size
    height, width = (size[0], size[0]) if len(size) == 1 else (size[0], size[1])
    mode = options.color_mode
    if mode == "auto":
        mode = "L" if scan.greyscale else "RGB"
    try:
        return InputSpec(
            channels=1 if mode == "L" else 3,
            height=height,
            width=width,
            color_mode=mode,  # type: ignore[arg-type]
            resample=options.resample,  # type: ignore[arg-type]
            background=options.background,
        )
    except ValueError as exc:
        raise DatasetError(f"folder data settings: {exc}") from None


def describe_conversion(spec: InputSpec) -> str:
    background = spec.background
    if background == "auto":
        background = "auto = " + ("white" if spec.background_rgb == (255, 255, 255) else "black")
    return (
        f"{spec.height}x{spec.width} (HxW) {spec.color_mode}, {spec.resample} resampling, "
        f"transparent pixels -> {background}"
    )


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


def _from_arrays(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    spec: InputSpec,
    seed: int,
    fractions: tuple[float, float],
) -> Dataset:
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


def _from_train_test(
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
    return _from_arrays("digits", images, labels, names, DIGITS_SPEC, seed, fractions)


def _torchvision() -> Any:
    try:
        import torchvision
    except ImportError as exc:
        raise DatasetError(
            "this data set is not on disk in a format read without torchvision; install the "
            "`vision` extra (pip install 'jem-serve[vision]') to download it, or place the "
            "files under the data root"
        ) from exc
    return torchvision


def _cifar(root: Path, download: bool, seed: int, val_fraction: float, *, hundred: bool) -> Dataset:
    classes = 100 if hundred else 10
    name = "cifar100" if hundred else "cifar10"
    bin_dir = root / ("cifar-100-binary" if hundred else "cifar-10-batches-bin")
    labels: CifarLabels = "fine" if hundred else "cifar10"
    if not hundred:
        train_files = [bin_dir / f"data_batch_{i}.bin" for i in range(1, 6)]
        test_files = [bin_dir / "test_batch.bin"]
        meta = bin_dir / "batches.meta.txt"
    else:
        train_files, test_files = [bin_dir / "train.bin"], [bin_dir / "test.bin"]
        meta = bin_dir / "fine_label_names.txt"
    if all(f.exists() for f in train_files + test_files):
        train = read_cifar_binary(train_files, labels)
        test = read_cifar_binary(test_files, labels)
        names = _names_file(meta, classes)
    else:
        tv = _torchvision()
        cls = tv.datasets.CIFAR100 if hundred else tv.datasets.CIFAR10
        parts = [cls(str(root), train=t, download=download) for t in (True, False)]
        train, test = ((np.asarray(p.data), np.asarray(p.targets)) for p in parts)
        names = list(parts[0].classes)
    return _from_train_test(name, train, test, names, RGB32_SPEC, seed, val_fraction)


def _names_file(path: Path, expected: int) -> list[str]:
    if path.exists():
        names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        if len(names) == expected:
            return names
    return [str(k) for k in range(expected)]


def _svhn(root: Path, download: bool, seed: int, val_fraction: float) -> Dataset:
    files = [root / "train_32x32.mat", root / "test_32x32.mat"]
    if all(f.exists() for f in files):
        train, test = read_svhn_mat(files[0]), read_svhn_mat(files[1])
    else:
        tv = _torchvision()
        parts = [tv.datasets.SVHN(str(root), split=s, download=download) for s in ("train", "test")]
        # torchvision keeps SVHN as (N, C, H, W) with label 0 for digit zero.
        train, test = (
            (np.asarray(p.data).transpose(0, 2, 3, 1).copy(), np.asarray(p.labels)) for p in parts
        )
    names = [str(k) for k in range(10)]
    return _from_train_test("svhn", train, test, names, RGB32_SPEC, seed, val_fraction)


def _folder(
    root: Path,
    spec: InputSpec | None,
    options: FolderOptions,
    seed: int,
    fractions: tuple[float, float],
) -> Dataset:
    try:
        scan = scan_image_folder(root)
        spec = spec or folder_spec(scan, options)
        log.info("folder %s: %s", root, scan.describe())
        log.info("converting every image to %s", describe_conversion(spec))
        images, labels, names = read_image_folder(root, spec, scan)
    except FormatError as exc:
        raise DatasetError(str(exc)) from None
    dataset = _from_arrays("folder", images, labels, names, spec, seed, fractions)
    record = root / "dataset.json"  # written by `python -m training data` (training/datasets)
    if record.is_file():
        dataset.split["source"] = json.loads(record.read_text())
    return dataset


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
        raise DatasetError(f"data root {path} does not exist")
    if name == "folder":
        options = folder or FolderOptions()
        return _folder(path, spec, options, seed, (val_fraction, test_fraction))
    if name == "svhn":
        return _svhn(path, download, seed, val_fraction)
    return _cifar(path, download, seed, val_fraction, hundred=name == "cifar100")
