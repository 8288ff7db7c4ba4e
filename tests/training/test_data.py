from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from jem import InputSpec
from training.data import (
    DIGITS_SPEC,
    DatasetError,
    load_dataset,
    load_digits_dataset,
    stratified_split,
)
from training.readers import FormatError, read_cifar_binary, read_image_folder, read_svhn_mat


def test_digits_shapes_range_and_spec() -> None:
    data = load_digits_dataset(seed=0)
    # scikit-learn's digits are digits-v1's output: uploads are normalised into that form
    assert data.spec == InputSpec(1, 8, 8, "L", resample="box", normalization="digits-v1")
    assert data.class_names == [str(k) for k in range(10)]
    assert len(data.train) + len(data.val) + len(data.test) == 1797
    x = data.train.inputs()
    assert x.shape == (len(data.train), 1, 8, 8)
    assert x.dtype == torch.float32
    assert float(x.min()) == -1.0
    assert float(x.max()) == 1.0
    # sklearn's 0..16 scale maps onto 0..255
    assert data.train.images.dtype == torch.uint8
    assert set(data.train.images.unique().tolist()) <= {round(v * 255 / 16) for v in range(17)}


def test_split_is_seeded_disjoint_and_stratified() -> None:
    a, b, c = load_digits_dataset(0), load_digits_dataset(0), load_digits_dataset(1)
    assert a.split == b.split
    assert a.split["indices_sha256"] != c.split["indices_sha256"]
    assert a.split["sizes"] == {"train": 1078, "val": 359, "test": 360}
    labels = np.arange(1797) % 10
    train, val, test = stratified_split(labels, (0.2, 0.2), seed=0)
    assert not set(train) & set(val)
    assert not set(train) & set(test)
    assert not set(val) & set(test)
    assert len(train) + len(val) + len(test) == 1797
    # every class keeps its share (within one example) in every part
    for part in (train, val, test):
        counts = np.bincount(labels[part], minlength=10)
        assert counts.max() - counts.min() <= 1


def test_digits_split_class_proportions_follow_the_data() -> None:
    data = load_digits_dataset(0)
    full = np.bincount(
        np.concatenate([data.train.labels, data.val.labels, data.test.labels]), minlength=10
    )
    for part in (data.train, data.val, data.test):
        share = np.bincount(part.labels.numpy(), minlength=10) / len(part)
        assert np.abs(share - full / full.sum()).max() < 0.01


def test_invalid_fractions_and_unknown_dataset() -> None:
    with pytest.raises(DatasetError, match="split fractions"):
        stratified_split(np.arange(10) % 2, (0.6, 0.5), 0)
    with pytest.raises(DatasetError, match="known: digits, cifar10"):
        load_dataset("mnist")
    with pytest.raises(DatasetError, match="data root"):
        load_dataset("cifar10")


def _cifar_records(n: int, label_bytes: int, seed: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=(n, label_bytes), dtype=np.uint8)
    pixels = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    raw = np.concatenate([labels, pixels.reshape(n, -1)], axis=1).tobytes()
    return raw, labels, pixels


def test_cifar10_binary_reader(tmp_path: Path) -> None:
    raw, labels, pixels = _cifar_records(7, 1, seed=0)
    (tmp_path / "b.bin").write_bytes(raw)
    images, targets = read_cifar_binary([tmp_path / "b.bin"])
    assert images.shape == (7, 32, 32, 3)
    np.testing.assert_array_equal(targets, labels[:, 0])
    # channel-major on disk, HWC in memory: pixel (row 3, col 5) of the green plane
    assert images[2, 3, 5, 1] == pixels[2, 1, 3, 5]


def test_cifar100_reader_picks_fine_or_coarse(tmp_path: Path) -> None:
    raw, labels, _ = _cifar_records(5, 2, seed=1)
    (tmp_path / "train.bin").write_bytes(raw)
    _, fine = read_cifar_binary([tmp_path / "train.bin"], "fine")
    _, coarse = read_cifar_binary([tmp_path / "train.bin"], "coarse")
    np.testing.assert_array_equal(coarse, labels[:, 0])
    np.testing.assert_array_equal(fine, labels[:, 1])
    with pytest.raises(FormatError, match="whole number"):
        read_cifar_binary([tmp_path / "train.bin"], "cifar10")


def test_load_cifar10_from_binary_batches(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(_cifar_records(20, 1, seed=i)[0])
    (folder / "test_batch.bin").write_bytes(_cifar_records(10, 1, seed=9)[0])
    names = ["airplane", "automobile", "bird", "cat", "deer"] + [f"c{k}" for k in range(5)]
    (folder / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    data = load_dataset("cifar10", root=tmp_path, val_fraction=0.1, seed=3)
    assert data.class_names == names
    assert len(data.train) + len(data.val) == 100
    assert len(data.test) == 10
    assert data.train.inputs().shape == (len(data.train), 3, 32, 32)


def test_svhn_mat_reader(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(32, 32, 3, 6), dtype=np.uint8)
    y = np.array([[10], [1], [2], [3], [10], [9]], dtype=np.uint8)
    savemat(tmp_path / "train_32x32.mat", {"X": x, "y": y})
    images, labels = read_svhn_mat(tmp_path / "train_32x32.mat")
    assert images.shape == (6, 32, 32, 3)
    assert labels.tolist() == [0, 1, 2, 3, 0, 9]
    np.testing.assert_array_equal(images[4], x[:, :, :, 4])
    savemat(tmp_path / "bad.mat", {"X": x})
    with pytest.raises(FormatError, match="'X' and 'y'"):
        read_svhn_mat(tmp_path / "bad.mat")


def _write_folder(root: Path, per_class: int = 4) -> None:
    rng = np.random.default_rng(0)
    for name, colour in (("cat", 40), ("dog", 200)):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(colour + rng.integers(-10, 10, size=(12, 10, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8), "RGB").save(root / name / f"{i}.png")
    (root / "dog" / "notes.txt").write_text("not an image")


def test_image_folder_converts_per_spec(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    spec = InputSpec(1, 8, 8, "L", invert=True, resample="box")
    images, labels, names = read_image_folder(tmp_path, spec)
    assert names == ["cat", "dog"]
    assert images.shape == (8, 8, 8, 1)
    assert labels.tolist() == [0] * 4 + [1] * 4
    # inverted grey levels: dark cats become bright
    assert images[labels == 0].mean() > 200
    assert images[labels == 1].mean() < 60


def test_folder_dataset_split(tmp_path: Path) -> None:
    _write_folder(tmp_path, per_class=10)
    spec = InputSpec(3, 16, 16, "RGB", resample="bilinear")
    data = load_dataset("folder", root=tmp_path, spec=spec, seed=0)
    assert data.class_names == ["cat", "dog"]
    assert (len(data.train), len(data.val), len(data.test)) == (12, 4, 4)
    assert data.train.inputs().shape == (12, 3, 16, 16)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="no class sub-folders"):
        read_image_folder(tmp_path, DIGITS_SPEC)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="no images"):
        read_image_folder(tmp_path, DIGITS_SPEC)


def test_missing_files_without_torchvision_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import raises ImportError
    with pytest.raises(DatasetError, match="`vision` extra"):
        load_dataset("svhn", root=tmp_path)


def test_a_folder_with_one_class_is_one_clear_error(tmp_path: Path) -> None:
    # e.g. the OOD folder given as --data-root: refused when loaded, not at the first health check
    from tests.training._shapes import make_shapes_folder

    make_shapes_folder(tmp_path / "other", 6, classes={"yellow": (230, 210, 40)})
    with pytest.raises(DatasetError, match=r"one class \('yellow'\); a classifier needs at least"):
        load_dataset("folder", root=tmp_path / "other")
