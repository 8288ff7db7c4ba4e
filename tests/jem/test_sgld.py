"""SGLD against an analytic Gaussian energy, and the sampler's promise to leave no trace."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from jem import JEM, SGLDConfig, create_backbone, sgld_sample


class GaussianEnergy(nn.Module):
    """E(x) = 0.5 * ||(x - mu) / sigma||^2, i.e. p(x) = N(mu, diag(sigma^2)); with y, mean mu_y."""

    def __init__(self, mu: Tensor, sigma: Tensor, class_means: Tensor | None = None) -> None:
        super().__init__()
        self.mu = nn.Parameter(mu.clone())
        self.log_sigma = nn.Parameter(sigma.log())
        self.class_means = class_means
        self.dropout = nn.Dropout(0.5)  # a submodule whose mode must be restored too
        self.calls: list[tuple[bool, list[bool], bool]] = []

    def energy(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        # record what the sampler set up: eval mode, frozen parameters, autograd on
        self.calls.append(
            (self.training, [p.requires_grad for p in self.parameters()], torch.is_grad_enabled())
        )
        mu = self.mu if y is None or self.class_means is None else self.class_means[y]
        return 0.5 * (((x - mu) / self.log_sigma.exp()) ** 2).sum(dim=1)


def test_langevin_recovers_gaussian_mean_and_variance() -> None:
    # 4 replicas of each sigma: 5000 chains x 4 dims = 20000 draws per (mu, sigma) pair
    mu = torch.tensor([1.0, -2.0]).repeat(4)
    sigma = torch.tensor([0.5, 1.0]).repeat(4)
    model = GaussianEnergy(mu, sigma)
    eps = 0.015  # proper Langevin: noise_std = sqrt(2 * step_size)
    config = SGLDConfig(steps=400, step_size=eps, noise_std=(2 * eps) ** 0.5, clamp=None)
    gen = torch.Generator().manual_seed(0)
    x = sgld_sample(model, torch.zeros(5000, 8), config, generator=gen)
    mean = x.mean(0).view(4, 2).mean(0)
    var = x.var(0).view(4, 2).mean(0)
    # the discretised chain's stationary variance is sigma^2 / (1 - eps / (2 sigma^2))
    s = sigma[:2]
    torch.testing.assert_close(mean, mu[:2], atol=0.02, rtol=0)
    torch.testing.assert_close(var, s**2 / (1 - eps / (2 * s**2)), rtol=0.03, atol=0)
    torch.testing.assert_close(var, s**2, rtol=0.06, atol=0)


def test_class_conditional_sampling_uses_the_class_energy() -> None:
    means = torch.tensor([[-2.0, 0.0], [3.0, 1.0]])
    model = GaussianEnergy(torch.zeros(2), torch.ones(2), class_means=means)
    config = SGLDConfig(steps=100, step_size=0.1, noise_std=0.2**0.5, clamp=None)
    y = torch.tensor([0, 1]).repeat(1000)
    gen = torch.Generator().manual_seed(0)
    x = sgld_sample(model, torch.zeros(2000, 2), config, y, generator=gen)
    torch.testing.assert_close(x[y == 0].mean(0), means[0], atol=0.1, rtol=0)
    torch.testing.assert_close(x[y == 1].mean(0), means[1], atol=0.1, rtol=0)


def test_clamp_keeps_samples_in_range() -> None:
    model = GaussianEnergy(torch.tensor([5.0, -5.0]), torch.ones(2))
    config = SGLDConfig(steps=50, step_size=0.5, noise_std=0.1, clamp=(-1.0, 1.0))
    x = sgld_sample(model, torch.zeros(100, 2), config, generator=torch.Generator())
    assert x.min() >= -1.0
    assert x.max() <= 1.0
    assert torch.allclose(x.mean(0), torch.tensor([1.0, -1.0]), atol=0.1)


def test_same_generator_seed_gives_identical_samples() -> None:
    torch.manual_seed(0)
    model = JEM(create_backbone("digits_cnn", width=8))
    x0 = torch.rand(8, 1, 8, 8) * 2 - 1
    config = SGLDConfig(steps=5)

    def run(seed: int) -> Tensor:
        return sgld_sample(model, x0, config, generator=torch.Generator().manual_seed(seed))

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not a.requires_grad
    assert a.grad_fn is None


@pytest.mark.parametrize("train_mode", [True, False])
def test_sampler_leaves_the_model_as_found(train_mode: bool) -> None:
    model = GaussianEnergy(torch.zeros(3), torch.ones(3))
    model.train(train_mode)
    model.dropout.train(not train_mode)  # a mixed-mode model stays mixed
    model.log_sigma.requires_grad_(False)  # a frozen parameter stays frozen
    model.mu.grad = torch.full((3,), 7.0)
    grad_before = model.mu.grad.clone()
    x0 = torch.zeros(10, 3, requires_grad=True)

    with torch.no_grad():
        x = sgld_sample(model, x0, SGLDConfig(steps=3, clamp=None), generator=torch.Generator())
        assert not torch.is_grad_enabled()  # grad mode restored

    assert model.calls == [(False, [False, False], True)] * 3  # eval, frozen, autograd on
    assert model.training is train_mode
    assert model.dropout.training is (not train_mode)
    assert model.mu.requires_grad
    assert not model.log_sigma.requires_grad
    assert torch.equal(model.mu.grad, grad_before)
    assert model.log_sigma.grad is None
    assert x0.grad is None
    assert torch.equal(x0, torch.zeros(10, 3))
    assert not torch.equal(x, x0)


def test_sampler_restores_the_model_when_the_energy_raises() -> None:
    class Exploding(GaussianEnergy):
        def energy(self, x: Tensor, y: Tensor | None = None) -> Tensor:
            if len(self.calls) == 2:
                raise RuntimeError("boom")
            return super().energy(x, y)

    model = Exploding(torch.zeros(2), torch.ones(2))
    model.train()
    model.log_sigma.requires_grad_(False)
    with pytest.raises(RuntimeError, match="boom"):
        sgld_sample(model, torch.zeros(4, 2), SGLDConfig(steps=5), generator=torch.Generator())
    assert model.training
    assert model.dropout.training
    assert model.mu.requires_grad
    assert not model.log_sigma.requires_grad
    assert model.mu.grad is None
    assert torch.is_grad_enabled()


def test_sampler_works_inside_inference_mode() -> None:
    model = GaussianEnergy(torch.zeros(2), torch.ones(2))
    with torch.inference_mode():
        x0 = torch.ones(4, 2)
        x = sgld_sample(model, x0, SGLDConfig(steps=10, step_size=0.1, noise_std=0.0, clamp=None))
    # noise-free gradient descent on 0.5 ||x||^2 shrinks by (1 - 0.1) per step
    torch.testing.assert_close(x, torch.full((4, 2), 0.9**10))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="steps"):
        SGLDConfig(steps=-1)
    with pytest.raises(ValueError, match="clamp"):
        SGLDConfig(clamp=(1.0, -1.0))
    with pytest.raises(ValueError, match="labels"):
        sgld_sample(
            GaussianEnergy(torch.zeros(2), torch.ones(2)),
            torch.zeros(3, 2),
            SGLDConfig(),
            torch.tensor([0, 1]),
        )
