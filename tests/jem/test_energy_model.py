"""The JEM wrapper's energies and probabilities, and the backbone factory."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import jem
from jem import JEM, create_backbone, energy_from_logits, list_backbones


@pytest.fixture
def model() -> JEM:
    torch.manual_seed(0)
    return JEM(create_backbone("digits_cnn"))


def test_energy_is_minus_logsumexp_of_logits(model: JEM) -> None:
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    logits = model(x)
    expected = -torch.log(torch.exp(logits.double()).sum(dim=1))
    torch.testing.assert_close(model.energy(x).double(), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(model.log_px(x), -model.energy(x))


def test_class_energy_is_minus_the_class_logit(model: JEM) -> None:
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    y = torch.tensor([0, 3, 9, 3, 1])
    logits = model(x)
    torch.testing.assert_close(model.energy(x, y), -logits[torch.arange(5), y])


def test_energy_from_logits_is_stable_for_large_logits() -> None:
    logits = torch.tensor([[1000.0, 1000.0], [-1000.0, 0.0]])
    e = energy_from_logits(logits)
    assert torch.isfinite(e).all()
    torch.testing.assert_close(e, torch.tensor([-1000.0 - torch.log(torch.tensor(2.0)), 0.0]))


def test_probs_with_temperature(model: JEM) -> None:
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    logits = model(x)
    for t in (0.5, 1.0, 3.0):
        p = model.probs(x, temperature=t)
        torch.testing.assert_close(p, torch.softmax(logits / t, dim=1))
        torch.testing.assert_close(p.sum(dim=1), torch.ones(4))
    # a higher temperature never sharpens: max prob shrinks towards 1/K
    assert (model.probs(x, 3.0).amax(1) <= model.probs(x, 1.0).amax(1) + 1e-6).all()
    with pytest.raises(ValueError, match="temperature"):
        model.probs(x, temperature=0.0)


def test_jem_needs_num_classes() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        JEM(nn.Linear(3, 2))


def test_factory_lists_known_backbones_on_unknown_name() -> None:
    assert {"digits_cnn", "wrn"} <= set(list_backbones())
    with pytest.raises(ValueError, match="digits_cnn, wrn"):
        create_backbone("resnet9000")


def test_register_backbone_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="already registered"):
        jem.register_backbone("wrn")(lambda: nn.Identity())


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _has_norm_layers(m: nn.Module) -> bool:
    norms = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)
    return any(isinstance(mod, norms) for mod in m.modules())


def test_digits_cnn_is_compact_and_has_no_batch_norm() -> None:
    net = create_backbone("digits_cnn")
    assert 100_000 <= _n_params(net) <= 300_000
    assert not _has_norm_layers(net)
    x = torch.zeros(3, 1, 8, 8)
    feats = net.forward_features(x)
    assert feats.shape == (3, net.num_features)
    assert net.forward_head(feats).shape == (3, 10)


@pytest.mark.parametrize("size", [8, 16, 28])
def test_digits_cnn_other_sizes(size: int) -> None:
    net = create_backbone("digits_cnn", in_channels=3, num_classes=4, image_size=size, width=8)
    assert net(torch.zeros(2, 3, size, size)).shape == (2, 4)


def test_wrn_28_10_has_about_36_5m_parameters() -> None:
    net = create_backbone("wrn")  # the JEM paper's WRN-28-10, without normalisation
    assert 36_400_000 <= _n_params(net) <= 36_600_000
    assert not _has_norm_layers(net)
    assert net.num_classes == 10


def test_small_wrn_forward_and_depth_check() -> None:
    net = create_backbone("wrn", depth=10, widen_factor=1, num_classes=7, dropout=0.1)
    x = torch.zeros(2, 3, 32, 32)
    assert net.forward_features(x).shape == (2, 64)
    assert net(x).shape == (2, 7)
    with pytest.raises(ValueError, match="6n \\+ 4"):
        create_backbone("wrn", depth=27)
