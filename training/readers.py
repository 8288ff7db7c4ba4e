"""Readers for on-disk data set formats that need neither torchvision nor pickle.

- CIFAR binary version (``cifar-10-batches-bin``, ``cifar-100-binary``): fixed-size records of
  label byte(s) followed by 3072 pixel bytes, channel-major (1024 R, 1024 G, 1024 B).
- SVHN cropped digits (``train_32x32.mat``): MATLAB file with ``X`` (32, 32, 3, N) and ``y`` (N, 1),
  digit zero stored as label 10.
- An image folder: ``root/<class name>/<image>``, classes sorted by name, read with Pillow.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from jem import InputSpec
from jem.imaging import to_pixels

__all__ = [
    "IMAGE_SUFFIXES",
    "FolderScan",
    "FormatError",
    "read_cifar_binary",
    "read_image_folder",
    "read_images",
    "read_svhn_mat",
    "scan_image_folder",
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


@dataclass(frozen=True)
class FolderScan:
    """What an image folder holds, from the image headers alone (nothing decoded)."""

    root: Path
    files: dict[str, list[Path]]  # class name -> its image files, both sorted
    sizes: Counter[tuple[int, int]]  # (width, height) -> number of images
    modes: Counter[str]  # Pillow mode -> number of images

    @property
    def greyscale(self) -> bool:
        """Every image is stored without colour (Pillow modes 1, L, LA, I, I;16...)."""
        return all(m in _GREY_MODES or m.startswith("I;16") for m in self.modes)

    def describe(self) -> str:
        def top(counter: Counter[Any], fmt: Any) -> str:
            common = counter.most_common(3)
            text = ", ".join(f"{fmt(k)} ({n})" for k, n in common)
            return text + (f" and {len(counter) - 3} more" if len(counter) > 3 else "")

        n = sum(len(f) for f in self.files.values())
        return (
            f"{n} images in {len(self.files)} classes; sizes {top(self.sizes, _wxh)}; "
            f"modes {top(self.modes, str)}"
        )


_GREY_MODES = ("1", "L", "LA", "I", "F")


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def scan_image_folder(root: Path) -> FolderScan:
    """List ``root/<class>/<image>`` and read every image's header; FormatError names the path."""
    if not root.is_dir():
        raise FormatError(f"{root}: not a directory (expected root/<class>/<image>)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        loose = [f.name for f in root.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES]
        hint = (
            f"; it holds {len(loose)} images directly: move them into one folder per class"
            if loose
            else ""
        )
        raise FormatError(f"{root}: no class sub-folders (expected root/<class>/<image>){hint}")
    files: dict[str, list[Path]] = {}
    sizes: Counter[tuple[int, int]] = Counter()
    modes: Counter[str] = Counter()
    for name in classes:
        found = sorted(
            f for f in (root / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
        )
        if not found:
            raise FormatError(
                f"class folder {root / name}: no images with suffixes {', '.join(IMAGE_SUFFIXES)}"
            )
        for file in found:
            try:
                with Image.open(file) as image:
                    sizes[image.size] += 1
                    modes[image.mode] += 1
            except OSError as exc:
                raise FormatError(f"{file}: Pillow cannot read it: {exc}") from exc
        files[name] = found
    return FolderScan(root, files, sizes, modes)


def read_images(folder: Path, spec: InputSpec) -> np.ndarray:
    """Every image under ``folder`` (sub-folders included, sorted by path) converted per
    ``spec``: uint8 (N, H, W, C). FormatError when there is none or one cannot be read."""
    if not folder.is_dir():
        raise FormatError(f"{folder}: not a directory of images")
    files = sorted(
        f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
    )
    if not files:
        raise FormatError(f"{folder}: no images with suffixes {', '.join(IMAGE_SUFFIXES)}")
    return np.stack([_read(file, spec) for file in files])


def _read(file: Path, spec: InputSpec) -> np.ndarray:
    try:
        with Image.open(file) as image:
            return to_pixels(image, spec)
    except OSError as exc:
        raise FormatError(f"{file}: Pillow cannot read it: {exc}") from exc


def read_image_folder(
    root: Path, spec: InputSpec, scan: FolderScan | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images uint8 (N, H, W, C), labels int64 (N,), class names from ``root/<class>/<file>``."""
    scan = scan or scan_image_folder(root)
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, files in enumerate(scan.files.values()):
        images += [_read(file, spec) for file in files]
        labels += [label] * len(files)
    return np.stack(images), np.asarray(labels, dtype=np.int64), list(scan.files)
