from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.config import ConfigError, apply_overrides
from training.mixing import Mixed, mix_batch, mixed_cross_entropy
from training.objective import jem_loss
from training.presets import preset


def _batch() -> torch.Tensor:
    return torch.rand(8, 3, 10, 12, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_mixup_is_a_convex_mix_with_a_permutation_drawn_from_seed_and_step() -> None:
    x = _batch()
    m = mix_batch(x, mixup_alpha=0.4, cutmix_alpha=0.0, seed=3, step=7)
    assert 0 < m.lam < 1
    assert sorted(m.perm.tolist()) == list(range(8))
    torch.testing.assert_close(m.x, m.lam * x + (1 - m.lam) * x[m.perm])
    # a pure function of (seed, rank, step): a resumed run mixes as an uninterrupted one
    again = mix_batch(x, mixup_alpha=0.4, cutmix_alpha=0.0, seed=3, step=7)
    assert again.lam == m.lam
    assert torch.equal(again.perm, m.perm)
    others = [
        mix_batch(x, mixup_alpha=0.4, cutmix_alpha=0.0, seed=s, step=t, rank=r).lam
        for s, t, r in ((4, 7, 0), (3, 8, 0), (3, 7, 1))
    ]
    assert m.lam not in others


def test_cutmix_pastes_one_box_and_lam_is_the_kept_area() -> None:
    x = _batch()
    for step in range(20):
        m = mix_batch(x, mixup_alpha=0.0, cutmix_alpha=1.0, seed=0, step=step)
        changed = (m.x != x).any(dim=(0, 1))  # (H, W): pixels taken from the partner
        from_partner = (m.x == x[m.perm]).all(dim=(0, 1))
        assert bool(from_partner[changed].all())
        rows, cols = changed.any(1).nonzero(), changed.any(0).nonzero()
        if len(rows):  # one rectangle: every pixel in its bounding box was replaced
            box = changed[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
            assert bool(box.all())
        assert m.lam == pytest.approx(1 - float(changed.float().mean()))


def test_off_returns_the_batch_and_bad_alphas_are_refused() -> None:
    x = _batch()
    m = mix_batch(x, mixup_alpha=0.0, cutmix_alpha=0.0, seed=0, step=0)
    assert m.x is x
    assert m.lam == 1.0
    with pytest.raises(ValueError, match="not both"):
        mix_batch(x, mixup_alpha=0.2, cutmix_alpha=1.0, seed=0, step=0)
    with pytest.raises(ValueError, match=">= 0"):
        mix_batch(x, mixup_alpha=-1.0, cutmix_alpha=0.0, seed=0, step=0)


def test_mixed_cross_entropy_is_the_cross_entropy_against_the_mixed_soft_target() -> None:
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 1])
    mixed = Mixed(torch.zeros(4, 1, 1, 1), torch.tensor([2, 0, 3, 1]), 0.7)
    eps = 0.1
    target = torch.full((4, 3), eps / 3)
    target[torch.arange(4), y] += 0.7 * (1 - eps)
    target[torch.arange(4), y[mixed.perm]] += 0.3 * (1 - eps)
    expected = -(target * F.log_softmax(logits, 1)).sum(1).mean()
    got = mixed_cross_entropy(logits, y, mixed, label_smoothing=eps)
    assert float(got) == pytest.approx(float(expected))
    parts = jem_loss(logits, y, mixed=mixed, label_smoothing=eps)
    assert parts.ce == pytest.approx(float(expected))
    # accuracy against each row's larger share
    flipped = Mixed(mixed.x, mixed.perm, 0.2)
    hits = (logits.argmax(1) == y[mixed.perm]).float().mean()
    assert jem_loss(logits, y, mixed=flipped).acc == pytest.approx(float(hits))


def test_the_config_keeps_mixing_to_the_softmax_baseline() -> None:
    cfg = apply_overrides(preset("emoji-baseline"), ["mixup_alpha=0.2"])
    assert cfg.mixup_alpha == 0.2
    with pytest.raises(ConfigError, match="need px_weight=0"):
        apply_overrides(preset("emoji-jem"), ["cutmix_alpha=1"])
    with pytest.raises(ConfigError, match="not both"):
        apply_overrides(preset("emoji-baseline"), ["mixup_alpha=0.2", "cutmix_alpha=1"])
    with pytest.raises(ConfigError, match="must be >= 0"):
        apply_overrides(preset("emoji-baseline"), ["cutmix_alpha=-1"])
