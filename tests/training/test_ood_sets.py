"""OOD sets: right shapes and ranges, seeded, and each one what its name says."""

from __future__ import annotations

import torch

from jem.preprocess import InputSpec
from training.ood_sets import OOD_SET_NAMES, make_ood_sets, pixel_shuffled

DIGITS = InputSpec(channels=1, height=8, width=8, color_mode="L")
RGB = InputSpec(channels=3, height=32, width=32, color_mode="RGB", resample="bilinear")


def _fake_test(n: int, spec: InputSpec) -> torch.Tensor:
    return torch.rand((n, *spec.shape), generator=torch.Generator().manual_seed(9)) * 2 - 1


def test_sets_have_the_test_split_size_shape_and_range() -> None:
    for spec in (DIGITS, RGB):
        x = _fake_test(37, spec)
        sets = make_ood_sets(x, spec, seed=0)
        assert tuple(sets) == OOD_SET_NAMES
        for name, images in sets.items():
            assert images.shape == (37, *spec.shape), name
            assert images.dtype == torch.float32, name
            assert images.min() >= -1.0, name
            assert images.max() <= 1.0, name


def test_sets_are_seeded() -> None:
    x = _fake_test(20, DIGITS)
    a, b, c = (make_ood_sets(x, DIGITS, seed=s) for s in (3, 3, 4))
    for name in OOD_SET_NAMES:
        assert torch.equal(a[name], b[name]), name
        assert not torch.equal(a[name], c[name]), name


def test_each_set_is_what_it_says() -> None:
    x = _fake_test(50, DIGITS)
    sets = make_ood_sets(x, DIGITS, seed=0)
    flat = sets["constant"].flatten(1)
    assert torch.equal(flat.min(1).values, flat.max(1).values)
    # shuffling keeps each image's pixel multiset and changes its layout
    assert torch.equal(
        sets["pixel_shuffled"].flatten(1).sort(1).values, x.flatten(1).sort(1).values
    )
    assert not torch.equal(sets["pixel_shuffled"], x)

    # photographs: natural images are smooth, so neighbouring pixels correlate; noise does not
    def neighbour_corr(images: torch.Tensor) -> float:
        a, b = images[..., :, :-1].flatten(), images[..., :, 1:].flatten()
        return float(torch.corrcoef(torch.stack([a, b]))[0, 1])

    assert neighbour_corr(sets["photo_patches"]) > 0.5
    assert abs(neighbour_corr(sets["uniform_noise"])) < 0.1


def test_pixel_shuffle_moves_channels_together() -> None:
    x = _fake_test(4, RGB)
    x[:, 1] = x[:, 0]
    shuffled = pixel_shuffled(x, torch.Generator().manual_seed(0))
    assert torch.equal(shuffled[:, 1], shuffled[:, 0])


def test_extra_sets_are_added_by_name() -> None:
    x = _fake_test(5, DIGITS)
    sets = make_ood_sets(x, DIGITS, extra={"zeros": lambda n: torch.zeros(n, 1, 8, 8)})
    assert sets["zeros"].shape == (5, 1, 8, 8)
