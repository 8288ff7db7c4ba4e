from __future__ import annotations

import torch

from training.batches import (
    augment,
    batch_indices,
    brightness_contrast,
    random_affine,
    random_erase,
)


def test_batch_order_depends_only_on_seed_and_step() -> None:
    a = [batch_indices(3, s, 50, 8) for s in range(20)]
    b = [batch_indices(3, s, 50, 8) for s in reversed(range(20))][::-1]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(batch_indices(4, 0, 50, 8), a[0])


def test_every_epoch_visits_every_example_once() -> None:
    seen = torch.cat([batch_indices(0, s, 40, 8) for s in range(10)])  # two epochs
    assert sorted(seen[:40].tolist()) == list(range(40))
    assert sorted(seen[40:].tolist()) == list(range(40))


def test_ranks_get_disjoint_shards_of_the_global_batch() -> None:
    r0 = batch_indices(0, 2, 64, 8, rank=0, world_size=2)
    r1 = batch_indices(0, 2, 64, 8, rank=1, world_size=2)
    assert not set(r0.tolist()) & set(r1.tolist())
    glob = batch_indices(0, 2, 64, 16)  # the same positions in one process
    assert torch.equal(torch.cat([r0, r1]), glob)


def test_augment_is_seeded_and_shape_preserving() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    assert augment(x, "none", torch.Generator()) is x
    a = augment(x, "crop_flip", torch.Generator().manual_seed(1), pad=2)
    b = augment(x, "crop_flip", torch.Generator().manual_seed(1), pad=2)
    assert a.shape == x.shape
    assert torch.equal(a, b)


def test_random_affine_is_seeded_and_the_identity_at_zero_strength() -> None:
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    a = augment(x, "affine_flip", torch.Generator().manual_seed(1))
    assert a.shape == x.shape
    assert torch.equal(a, augment(x, "affine_flip", torch.Generator().manual_seed(1)))
    assert not torch.allclose(a, x)
    # no rotation, zoom or shift: every output pixel is its input pixel
    same = random_affine(x, torch.Generator(), degrees=0, scale=(1, 1), translate=0)
    torch.testing.assert_close(same, x)
    # a 90-degree turn of a square image moves pixels, not values (border padding: no new colours)
    turned = random_affine(x, torch.Generator(), degrees=90, scale=(1, 1), translate=0)
    assert turned.min() >= x.min() - 1e-6
    assert turned.max() <= x.max() + 1e-6


def _augment_per_image(x: torch.Tensor, mode: str, generator: torch.Generator, pad: int = 4):  # type: ignore[no-untyped-def]
    """The per-image reference (torchvision's RandomCrop + RandomHorizontalFlip, one by one)."""
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    shifts = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator).tolist()
    out = torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(shifts)])
    if mode == "crop_flip":
        flip = torch.rand(b, generator=generator) < 0.5
        out[flip] = out[flip].flip(-1)
    return out


def test_batched_augment_equals_the_per_image_reference() -> None:
    # one gather (so it runs on a GPU without per-image kernels) draws the same numbers from the
    # generator and gives exactly the per-image crops and flips: seeded CPU runs are unchanged
    x = torch.randn(32, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    for mode in ("crop", "crop_flip"):
        g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        assert torch.equal(augment(x, mode, g1), _augment_per_image(x, mode, g2))
        assert torch.equal(g1.get_state(), g2.get_state())


def test_brightness_contrast_matches_colorjitter_per_image() -> None:
    x = torch.rand(5, 3, 6, 6) * 2 - 1
    out = brightness_contrast(x, torch.Generator().manual_seed(3), strength=0.3)
    u = torch.rand(5, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2 - 1
    for i in range(5):  # torchvision's adjust_brightness then adjust_contrast, one image at a time
        b, c = (1 + 0.3 * u[i]).tolist()
        img = ((x[i] + 1) / 2 * b).clamp(0, 1)
        grey = 0.2989 * img[0] + 0.587 * img[1] + 0.114 * img[2]
        img = ((img - grey.mean()) * c + grey.mean()).clamp(0, 1)
        assert torch.allclose(out[i], img * 2 - 1, atol=1e-6)
    assert float(out.abs().max()) <= 1
    same = brightness_contrast(x, torch.Generator().manual_seed(3), strength=0.0)
    assert torch.allclose(same, x, atol=1e-6)  # strength 0: the identity


def test_affine_flip_jitter_is_affine_flip_then_the_jitter() -> None:
    x = torch.rand(4, 3, 8, 8) * 2 - 1
    jittered = augment(x, "affine_flip_jitter", torch.Generator().manual_seed(2))
    gen = torch.Generator().manual_seed(2)
    expected = brightness_contrast(augment(x, "affine_flip", gen), gen)
    assert torch.equal(jittered, expected)


def test_random_erase_fills_one_rectangle_per_erased_image_with_noise() -> None:
    x = torch.zeros(64, 3, 16, 16)
    out = random_erase(x, torch.Generator().manual_seed(0))
    assert torch.equal(x, torch.zeros_like(x))  # a new tensor: the input is untouched
    assert torch.equal(out, random_erase(x, torch.Generator().manual_seed(0)))
    erased = (out != 0).any(dim=1)  # (B, H, W)
    hit = erased.flatten(1).any(dim=1)
    assert 0.3 < float(hit.float().mean()) < 0.7  # p = 1/2 per image
    assert out.min() >= -1
    assert out.max() <= 1
    for mask in erased[hit]:
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        box = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert bool(box.all())  # one filled rectangle
        assert 0.02 * 256 * 0.5 <= int(mask.sum()) <= 0.33 * 256 * 1.5  # about scale's area
    # p = 0: nothing erased; the mode is random_erase after the preset's affine transform + flip
    assert torch.equal(random_erase(x, torch.Generator(), p=0.0), x)
    y = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1
    g1, g2 = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    expected = random_erase(augment(y, "affine_flip", g2), g2)
    assert torch.equal(augment(y, "affine_flip_erase", g1), expected)
