"""CIFAR extras are used only when on disk: missing data or weights are skipped, never fetched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jem import InputSpec
from training.data import Dataset, LabeledImages
from training.eval_vision import extra_ood_sets, inception_metrics

RGB = InputSpec(channels=3, height=32, width=32, color_mode="RGB", resample="bilinear")
DIGITS = InputSpec(channels=1, height=8, width=8, color_mode="L")


def _dataset(name: str, spec: InputSpec) -> Dataset:
    h, w, c = spec.height, spec.width, spec.channels
    part = LabeledImages(torch.zeros(4, h, w, c, dtype=torch.uint8), torch.arange(4), spec)
    return Dataset(name, part, part, part, ["a", "b", "c", "d"], spec)


def test_missing_svhn_and_cifar100_are_skipped_with_the_reason(tmp_path: Path) -> None:
    builders, skipped = extra_ood_sets(_dataset("cifar10", RGB), str(tmp_path), seed=0)
    assert builders == {}
    assert set(skipped) == {"svhn", "cifar100"}
    assert all(str(tmp_path) in why for why in skipped.values())


def test_digits_get_no_extra_sets() -> None:
    assert extra_ood_sets(_dataset("digits", DIGITS), None, seed=0) == ({}, {})


def test_inception_metrics_only_for_rgb_and_only_with_local_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = torch.zeros(2, 1, 8, 8)
    assert inception_metrics(x, x, DIGITS) is None
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty hub cache
    result = inception_metrics(torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 32, 32), RGB)
    assert result is not None
    assert "not available locally" in result["skipped"]
