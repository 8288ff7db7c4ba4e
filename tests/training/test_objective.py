from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from training.objective import jem_loss


def test_baseline_is_plain_cross_entropy() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    y = torch.tensor([0, 2])
    parts = jem_loss(logits, y, logits * 5, px_weight=0.0, energy_reg=1.0)
    assert float(parts.loss) == pytest.approx(float(F.cross_entropy(logits, y)))
    assert parts.acc == 0.5
    assert parts.gap == 0.0


def test_generative_term_and_regulariser_match_the_formula() -> None:
    logits = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    sampled = torch.tensor([[-1.0, -1.0], [3.0, 0.0]])
    x_sampled = torch.tensor([[-0.5, 0.7]])
    y = torch.tensor([1, 0])
    e_data = -torch.logsumexp(logits, 1)
    e_sample = -torch.logsumexp(sampled, 1)
    ce = F.cross_entropy(logits, y)
    expected = ce + 0.5 * (e_data.mean() - e_sample.mean()) + 0.1 * (e_data**2 + e_sample**2).mean()
    parts = jem_loss(logits, y, sampled, x_sampled, px_weight=0.5, energy_reg=0.1)
    assert float(parts.loss) == pytest.approx(float(expected))
    assert parts.gap == pytest.approx(float(e_data.mean() - e_sample.mean()))
    assert (parts.sample_min, parts.sample_max) == pytest.approx((-0.5, 0.7))
    assert parts.max_abs_energy == pytest.approx(float(torch.cat([e_data, e_sample]).abs().max()))


def test_gradient_lowers_data_energy_and_raises_sample_energy() -> None:
    logits = torch.zeros(4, 3, requires_grad=True)
    sampled = torch.zeros(4, 3, requires_grad=True)
    parts = jem_loss(logits, torch.zeros(4, dtype=torch.long), sampled, px_weight=1.0)
    parts.loss.backward()
    assert logits.grad is not None
    assert sampled.grad is not None
    # descending the loss raises data logits (lower energy) and lowers sample logits
    assert float(sampled.grad.sum()) > 0
    assert math.isclose(float(sampled.grad.sum()), 1.0, rel_tol=1e-6)


def test_grad_penalty_is_the_squared_input_gradient_of_the_energy() -> None:
    # one class and a linear net: E(x) = -x.w, so grad_x E = -w for every input, and the
    # penalty is |w|^2 exactly; its own gradient w.r.t. w (create_graph) is 2 * weight * w
    w = torch.tensor([3.0, -4.0], requires_grad=True)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    y = torch.zeros(5, dtype=torch.long)
    plain = jem_loss((x @ w).unsqueeze(1), y)
    parts = jem_loss((x @ w).unsqueeze(1), y, x_data=x, grad_penalty=0.5)
    assert float((parts.loss - plain.loss).detach()) == pytest.approx(0.5 * 25.0)
    assert parts.data_grad_norm == pytest.approx(5.0)
    (grad_w,) = torch.autograd.grad(parts.loss, w)
    torch.testing.assert_close(grad_w, 2 * 0.5 * w.detach())  # CE of one class is constant 0


def test_grad_penalty_needs_the_inputs() -> None:
    logits = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="x_data"):
        jem_loss(logits, torch.zeros(2, dtype=torch.long), grad_penalty=1.0)
    with pytest.raises(ValueError, match="x_data"):
        jem_loss(
            logits, torch.zeros(2, dtype=torch.long), x_data=torch.zeros(2, 4), grad_penalty=1.0
        )


def test_label_smoothing_mixes_the_target_with_the_uniform_distribution() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    y = torch.tensor([0, 2])
    eps = 0.1
    log_p = F.log_softmax(logits, dim=1)
    # target: 1 - eps + eps / C on the label, eps / C on every class (Szegedy et al. 2016)
    target = torch.full_like(logits, eps / 3)
    target[torch.arange(2), y] += 1 - eps
    expected = -(target * log_p).sum(dim=1).mean()
    parts = jem_loss(logits, y, label_smoothing=eps)
    assert float(parts.loss) == pytest.approx(float(expected))
    assert parts.ce == pytest.approx(float(expected))
    assert float(jem_loss(logits, y).loss) < float(expected)  # on these logits smoothing costs more
    assert parts.acc == 0.5  # accuracy is the logits' argmax, whatever the target
