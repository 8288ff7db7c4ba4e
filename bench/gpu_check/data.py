"""CIFAR-10 binary files (`cifar-10-batches-bin`) written here: learnable, seeded, no download.

Each class has its own colour and stripe orientation, with per-image jitter and noise, so the
check's accuracy means "the model learns" rather than nothing; it is not CIFAR-10's accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["write_cifar10"]

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _images(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    n = labels.shape[0]
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32) / 32.0
    angle = labels[:, None, None] * (np.pi / 10) + rng.normal(0, 0.1, (n, 1, 1))
    freq = 3.0 + rng.uniform(-0.5, 0.5, (n, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    stripes = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    hue = labels[:, None] * (2 * np.pi / 10) + np.array([0.0, 2.1, 4.2])[None, :]
    colour = 0.5 + 0.35 * np.cos(hue)  # (n, 3)
    img = colour[:, :, None, None] * (0.6 + 0.4 * stripes[:, None])  # (n, 3, 32, 32)
    img = img + rng.normal(0, 0.08, img.shape)
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def write_cifar10(root: Path, per_file: int, seed: int = 0) -> Path:
    """Five training files and a test file of `per_file` records each, under root/."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)
    files = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name in files:
        labels = np.resize(np.arange(10, dtype=np.uint8), per_file)
        rng.shuffle(labels)
        pixels = _images(rng, labels.astype(np.int64)).reshape(per_file, -1)
        records = np.concatenate([labels[:, None], pixels], axis=1)
        records.tofile(folder / name)
    (folder / "batches.meta.txt").write_text("\n".join(NAMES) + "\n")
    return folder
