"""Readers for on-disk data set formats that need neither torchvision nor pickle.

- CIFAR binary version (``cifar-10-batches-bin``, ``cifar-100-binary``): fixed-size records of
  label byte(s) followed by 3072 pixel bytes, channel-major (1024 R, 1024 G, 1024 B).
- SVHN cropped digits (``train_32x32.mat``): MATLAB file with ``X`` (32, 32, 3, N) and ``y`` (N, 1),
  digit zero stored as label 10.
- An image folder: ``root/<class name>/<image>``, classes sorted by name, read with Pillow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from jem import InputSpec
from jem.imaging import to_pixels

__all__ = [
    "IMAGE_SUFFIXES",
    "FormatError",
    "read_cifar_binary",
    "read_image_folder",
    "read_svhn_mat",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
CIFAR_PIXELS = 3 * 32 * 32
CifarLabels = Literal["cifar10", "coarse", "fine"]


class FormatError(ValueError):
    """A file is not in the format its name promises."""


def read_cifar_binary(
    files: Sequence[Path], labels: CifarLabels = "cifar10"
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 32, 32, 3) and labels int64 (N,) from CIFAR binary batches.

    ``labels``: ``cifar10`` (one label byte), or for CIFAR-100 (coarse byte then fine byte)
    which of the two to return.
    """
    label_bytes = 1 if labels == "cifar10" else 2
    record = label_bytes + CIFAR_PIXELS
    images, targets = [], []
    for path in files:
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % record:
            raise FormatError(
                f"{path}: {raw.size} bytes is not a whole number of {record}-byte CIFAR records "
                f"(is this the binary version, labels={labels!r}?)"
            )
        rows = raw.reshape(-1, record)
        targets.append(rows[:, 0 if labels in ("cifar10", "coarse") else 1].astype(np.int64))
        pixels = rows[:, label_bytes:].reshape(-1, 3, 32, 32)
        images.append(pixels.transpose(0, 2, 3, 1))
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(targets)


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 32, 32, 3) and labels int64 (N,) in 0..9 from an SVHN ``.mat`` file."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except (ValueError, OSError) as exc:
        raise FormatError(f"{path}: not a readable MATLAB file: {exc}") from exc
    if "X" not in mat or "y" not in mat:
        raise FormatError(f"{path}: expected variables 'X' and 'y', found {sorted(mat)}")
    x = np.asarray(mat["X"])
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise FormatError(f"{path}: X has shape {x.shape}, expected (32, 32, 3, N)")
    y = np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    if y.shape[0] != x.shape[3]:
        raise FormatError(f"{path}: {x.shape[3]} images but {y.shape[0]} labels")
    y[y == 10] = 0  # SVHN stores the digit zero as class 10
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2).astype(np.uint8)), y


def read_image_folder(root: Path, spec: InputSpec) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images uint8 (N, H, W, C), labels int64 (N,), class names from ``root/<class>/<file>``."""
    if not root.is_dir():
        raise FormatError(f"{root}: not a directory of class sub-folders")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise FormatError(f"{root}: no class sub-folders (expected root/<class>/<image>)")
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = sorted(
            f for f in (root / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
        )
        if not files:
            raise FormatError(f"{root / name}: no images with suffixes {', '.join(IMAGE_SUFFIXES)}")
        for file in files:
            try:
                with Image.open(file) as image:
                    images.append(to_pixels(image, spec))
            except OSError as exc:
                raise FormatError(f"{file}: Pillow cannot read it: {exc}") from exc
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64), classes
