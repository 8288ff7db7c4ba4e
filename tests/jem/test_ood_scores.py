"""OOD scores against per-sample references, and the model left as found."""

from __future__ import annotations

import pytest
import torch

from jem import (
    JEM,
    OOD_SCORES,
    create_backbone,
    energy_score,
    grad_norm_score,
    max_softmax_from_logits,
    max_softmax_score,
    ood_scores,
)


@pytest.fixture
def model() -> JEM:
    torch.manual_seed(0)
    return JEM(create_backbone("digits_cnn", width=16))


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_grad_norm_matches_a_per_sample_loop(model: JEM, x: torch.Tensor) -> None:
    reference = []
    for xi in x:
        xi = xi.unsqueeze(0).clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model.energy(xi).sum(), xi)
        reference.append(g.norm())
    torch.testing.assert_close(grad_norm_score(model, x), torch.stack(reference))


def test_energy_and_max_softmax_scores(model: JEM, x: torch.Tensor) -> None:
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(energy_score(model, x), -torch.logsumexp(logits, 1))
    torch.testing.assert_close(
        max_softmax_score(model, x, temperature=2.0), 1 - torch.softmax(logits / 2, 1).amax(1)
    )


def test_ood_scores_agree_with_the_single_scores(model: JEM, x: torch.Tensor) -> None:
    scores = ood_scores(model, x, temperature=1.5)
    assert tuple(scores) == OOD_SCORES
    torch.testing.assert_close(scores["energy"], energy_score(model, x))
    torch.testing.assert_close(scores["grad_norm"], grad_norm_score(model, x))
    torch.testing.assert_close(scores["max_softmax"], max_softmax_score(model, x, 1.5))
    assert list(ood_scores(model, x, names=["grad_norm"])) == ["grad_norm"]
    with pytest.raises(ValueError, match="known scores: energy, grad_norm, max_softmax"):
        ood_scores(model, x, names=["mahalanobis"])


def test_scores_leave_the_model_as_found(model: JEM, x: torch.Tensor) -> None:
    model.train()
    frozen = next(model.parameters())
    frozen.requires_grad_(False)
    with torch.inference_mode():  # as the service calls them
        scores = ood_scores(model, x)
    assert model.training
    assert not frozen.requires_grad
    assert all(p.requires_grad for p in list(model.parameters())[1:])
    assert all(p.grad is None for p in model.parameters())
    assert all(not s.requires_grad for s in scores.values())
    assert (scores["grad_norm"] > 0).all()


def test_max_softmax_keeps_its_precision_where_the_top_probability_rounds_to_one() -> None:
    logits = torch.tensor([[30.0, 0.0, 0.0], [1.0, 2.0, 3.0], [5.0, 5.0, 0.0], [300.0, 0.0, 0.0]])
    naive = 1 - torch.softmax(logits, dim=1).amax(dim=1)
    exact = 1 - torch.softmax(logits.double(), dim=1).amax(dim=1)
    others = 2 * torch.exp(torch.tensor(-30.0, dtype=torch.float64))  # 1 - p for the first row
    exact[0] = others / (1 + others)
    got = max_softmax_from_logits(logits)
    assert naive[0] == 0  # float32 `1 - p`: every confident image scores 0 ...
    assert got[0] > 0  # ... this does not, and it is right to float32 precision
    torch.testing.assert_close(got.double(), exact, rtol=1e-6, atol=0.0)
    assert got[2] == pytest.approx(0.5, abs=0.01)  # two tied top classes: about one half
    assert got[3] == 0  # every other class underflows
    # the temperature scales the logits as softmax(f / T) does
    torch.testing.assert_close(
        max_softmax_from_logits(logits, 2.0), max_softmax_from_logits(logits / 2)
    )
    with pytest.raises(ValueError, match="temperature must be > 0"):
        max_softmax_from_logits(logits, 0.0)
