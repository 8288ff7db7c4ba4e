"""The data sets read from disk: CIFAR-10/100 and SVHN (their official files under the data root,
or torchvision's download) and image folders (``root/<class>/<image>``, scanned, converted per an
input spec, split stratified). `training.data.load_dataset` is the entry point to all of them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from jem import InputSpec
from training.data import (
    RGB32_SPEC,
    Dataset,
    DatasetError,
    FolderOptions,
    dataset_from_arrays,
    dataset_from_train_test,
)
from training.readers import (
    CifarLabels,
    FolderScan,
    FormatError,
    read_cifar_binary,
    read_image_folder,
    read_svhn_mat,
    scan_image_folder,
)

__all__ = ["describe_conversion", "folder_spec", "load_cifar", "load_folder", "load_svhn"]

log = logging.getLogger("training")


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


def load_cifar(
    root: Path, download: bool, seed: int, val_fraction: float, *, hundred: bool
) -> Dataset:
    """CIFAR-10 (or CIFAR-100's fine labels when ``hundred``): the official binary files under
    ``root`` when present, else torchvision's (downloaded only when ``download``); the official
    test set, validation carved from train. Images (N, 32, 32, 3) uint8."""
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
    return dataset_from_train_test(name, train, test, names, RGB32_SPEC, seed, val_fraction)


def _names_file(path: Path, expected: int) -> list[str]:
    if path.exists():
        names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        if len(names) == expected:
            return names
    return [str(k) for k in range(expected)]


def load_svhn(root: Path, download: bool, seed: int, val_fraction: float) -> Dataset:
    """SVHN's cropped digits: the official .mat files under ``root`` when present, else
    torchvision's; the official test set, validation carved from train."""
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
    return dataset_from_train_test("svhn", train, test, names, RGB32_SPEC, seed, val_fraction)


def load_folder(
    root: Path,
    spec: InputSpec | None,
    options: FolderOptions,
    seed: int,
    fractions: tuple[float, float],
) -> Dataset:
    """``root/<class>/<image>``, converted per ``spec`` (or the spec ``options`` give), split
    stratified by ``fractions`` (validation, test). DatasetError names the file or class
    at fault."""
    try:
        scan = scan_image_folder(root)
        spec = spec or folder_spec(scan, options)
        log.info("folder %s: %s", root, scan.describe())
        log.info("converting every image to %s", describe_conversion(spec))
        images, labels, names = read_image_folder(root, spec, scan)
    except FormatError as exc:
        raise DatasetError(str(exc)) from None
    dataset = dataset_from_arrays("folder", images, labels, names, spec, seed, fractions)
    record = root / "dataset.json"  # written by `python -m training data` (training/datasets)
    if record.is_file():
        dataset.split["source"] = json.loads(record.read_text())
    return dataset
