"""The replay buffer: reinit fraction, per-class slices, state round trip; the JEM++ init."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load, save

from jem import ClassGaussianInit, ReplayBuffer, UniformInit, init_from_state_dict

SHAPE = (1, 4, 4)


def _buffer(reinit_freq: float, seed: int = 0, capacity: int = 100) -> ReplayBuffer:
    gen = torch.Generator().manual_seed(seed)
    return ReplayBuffer(capacity, SHAPE, 10, UniformInit(), reinit_freq, generator=gen)


def test_initial_contents_come_from_the_init() -> None:
    buf = _buffer(0.05)
    assert buf.x.shape == (100, *SHAPE)
    assert buf.x.min() >= -1.0
    assert buf.x.max() <= 1.0
    assert buf.x.std() > 0.5  # uniform on [-1, 1] has std 0.577


@pytest.mark.parametrize("reinit_freq", [0.0, 0.05, 0.3, 1.0])
def test_reinit_fraction_matches_reinit_freq(reinit_freq: float) -> None:
    buf = _buffer(reinit_freq)
    buf.x.fill_(5.0)  # outside the init's range: a fresh chain is recognisable
    n_fresh, n = 0, 0
    for _ in range(20):
        x, _ = buf.sample(1000)
        fresh = (x.flatten(1) <= 1.0).all(dim=1)
        assert ((x.flatten(1) == 5.0).all(dim=1) | fresh).all()
        n_fresh, n = n_fresh + int(fresh.sum()), n + x.shape[0]
    # binomial standard error at n = 20000 is at most 0.0035
    assert abs(n_fresh / n - reinit_freq) < 0.012


def test_class_conditional_draws_come_from_the_class_slice() -> None:
    buf = _buffer(0.0, capacity=103)  # capacity not divisible by K: slices differ by one
    buf.x = torch.arange(103.0).view(-1, 1, 1, 1).expand(-1, *SHAPE).clone()
    sizes = buf.starts.diff()
    assert int(sizes.sum()) == 103
    assert int(sizes.max() - sizes.min()) <= 1
    y = torch.arange(10).repeat(200)
    x, idx = buf.sample(2000, y)
    assert torch.equal(buf.labels[idx], y)
    assert torch.equal(x[:, 0, 0, 0].long(), idx)
    # every slot of every slice gets drawn: draws are uniform within the slice
    assert set(idx.tolist()) == set(range(103))


def test_reinit_draws_use_the_slot_class_init() -> None:
    means = torch.arange(10.0).view(10, 1).expand(10, 16).contiguous()
    init = ClassGaussianInit(means, torch.full((10, 16), 1e-3), SHAPE, clamp=None)
    buf = ReplayBuffer(50, SHAPE, 10, init, reinit_freq=1.0, generator=torch.Generator())
    y = torch.tensor([3, 7, 0, 9])
    x, _ = buf.sample(4, y)
    torch.testing.assert_close(x.mean(dim=(1, 2, 3)), y.float(), atol=1e-2, rtol=0)
    x, idx = buf.sample(64)  # unconditional: each fresh chain matches its slot's class
    torch.testing.assert_close(x.mean(dim=(1, 2, 3)), buf.labels[idx].float(), atol=1e-2, rtol=0)


def test_update_writes_back_to_the_drawn_slots() -> None:
    buf = _buffer(0.0)
    x, idx = buf.sample(8)
    buf.update(idx, torch.full_like(x, 0.25))
    assert (buf.x[idx] == 0.25).all()


@pytest.mark.parametrize("kind", ["uniform", "gaussian"])
def test_state_round_trip_through_safetensors(kind: str) -> None:
    gen = torch.Generator().manual_seed(1)
    data = torch.rand(200, *SHAPE) * 2 - 1
    labels = torch.arange(200) % 10
    init = (
        UniformInit(-0.5, 0.5)
        if kind == "uniform"
        else ClassGaussianInit.fit(data, labels, 10, covariance="full", clamp=(-1.0, 1.0))
    )
    buf = ReplayBuffer(60, SHAPE, 10, init, reinit_freq=0.2, generator=gen)
    x, idx = buf.sample(16)
    buf.update(idx, x + 0.1)

    state = load(save(buf.state_dict()))  # safetensors refuses shared or non-contiguous tensors
    other = ReplayBuffer(60, SHAPE, 10, UniformInit(), 0.05, torch.Generator().manual_seed(9))
    other.load_state_dict(state)
    rebuilt = ReplayBuffer.from_state_dict(state)
    for b in (other, rebuilt):
        assert torch.equal(b.x, buf.x)
        assert b.reinit_freq == pytest.approx(0.2)
        assert type(b.init) is type(buf.init)
        assert torch.equal(b.labels, buf.labels)
    # a restored buffer keeps its init: the same generator state gives the same fresh draws
    y = torch.arange(10)
    a = buf.init.sample(10, SHAPE, y, torch.Generator().manual_seed(3))
    b = other.init.sample(10, SHAPE, y, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_load_rejects_a_mismatched_buffer() -> None:
    state = _buffer(0.05, capacity=100).state_dict()
    with pytest.raises(ValueError, match="capacity and shape"):
        _buffer(0.05, capacity=50).load_state_dict(state)


def test_class_gaussian_recovers_class_means_and_covariance() -> None:
    gen = torch.Generator().manual_seed(0)
    true_means = torch.tensor([[-0.5, 0.2], [0.4, -0.3], [0.0, 0.6]])
    # a correlated covariance shared by all classes
    chol = torch.tensor([[0.10, 0.0], [0.06, 0.05]])
    y = torch.arange(3).repeat(3000)
    x = true_means[y] + torch.randn(9000, 2, generator=gen) @ chol.T
    init = ClassGaussianInit.fit(x.view(-1, 1, 1, 2), y, 3, covariance="full", clamp=None)
    torch.testing.assert_close(init.mean, true_means, atol=0.01, rtol=0)

    y_draw = torch.arange(3).repeat(4000)
    draws = init.sample(12_000, (1, 1, 2), y_draw, generator=gen).view(-1, 2)
    for k in range(3):
        dk = draws[y_draw == k]
        torch.testing.assert_close(dk.mean(0), true_means[k], atol=0.01, rtol=0)
        torch.testing.assert_close(torch.cov(dk.T), chol @ chol.T, atol=2e-3, rtol=0)


def test_class_gaussian_diag_and_clamp() -> None:
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(2).repeat(500)
    x = (y.float() * 2 - 1).view(-1, 1, 1, 1) * 0.9 + 0.3 * torch.randn(1000, *SHAPE, generator=gen)
    init = ClassGaussianInit.fit(x, y, 2, covariance="diag", clamp=(-1.0, 1.0))
    assert init.covariance == "diag"
    assert init.scale.shape == (2, 16)
    draws = init.sample(2000, SHAPE, torch.arange(2).repeat(1000), generator=gen)
    assert draws.min() >= -1.0
    assert draws.max() <= 1.0
    torch.testing.assert_close(init.scale.mean(1), torch.full((2,), 0.3), atol=0.02, rtol=0)
    rebuilt = init_from_state_dict(init.state_dict())
    assert isinstance(rebuilt, ClassGaussianInit)
    assert rebuilt.clamp == (-1.0, 1.0)
    assert torch.equal(rebuilt.scale, init.scale)


def test_class_gaussian_needs_every_class() -> None:
    with pytest.raises(ValueError, match="class 2 has no examples"):
        ClassGaussianInit.fit(torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 0, 1]), 3)


def test_pooled_class_gaussian_is_fitted_small_and_sampled_smooth_at_full_size() -> None:
    gen = torch.Generator().manual_seed(0)
    # two classes of 8x8 RGB images: one colour each plus per-pixel noise
    y = torch.arange(2).repeat(300)
    colours = torch.tensor([[0.8, -0.2, 0.1], [-0.6, 0.5, 0.3]])
    x = colours[y].view(-1, 3, 1, 1) + 0.3 * torch.randn(600, 3, 8, 8, generator=gen)
    init = ClassGaussianInit.fit(x, y, 2, covariance="full", clamp=(-1.0, 1.0), pool=4)
    assert init.fitted_shape == (3, 2, 2)
    assert init.mean.shape == (2, 12)
    assert init.scale.shape == (2, 12, 12)
    draws = init.sample(400, (3, 8, 8), torch.arange(2).repeat(200), generator=gen)
    assert draws.shape == (400, 3, 8, 8)
    for k in range(2):
        torch.testing.assert_close(draws[k::2].mean((0, 2, 3)), colours[k], atol=0.03, rtol=0)
    # bilinear upsampling of a 2x2 draw: neighbouring pixels differ far less than in the data

    def neighbour_gap(t: torch.Tensor) -> float:
        return float((t[..., :, 1:] - t[..., :, :-1]).abs().mean())

    assert neighbour_gap(draws) < neighbour_gap(x) / 3
    rebuilt = init_from_state_dict(load(save(init.state_dict())))
    assert isinstance(rebuilt, ClassGaussianInit)
    assert rebuilt.pool == 4
    y_draw = torch.arange(2)
    a = init.sample(2, (3, 8, 8), y_draw, torch.Generator().manual_seed(5))
    assert torch.equal(a, rebuilt.sample(2, (3, 8, 8), y_draw, torch.Generator().manual_seed(5)))


def test_pooled_class_gaussian_rejects_a_pool_that_does_not_divide_the_image() -> None:
    with pytest.raises(ValueError, match="divide"):
        ClassGaussianInit.fit(torch.zeros(4, 3, 6, 6), torch.tensor([0, 1, 0, 1]), 2, pool=4)


def test_mixed_init_draws_a_fraction_from_uniform_noise_and_round_trips() -> None:
    from jem import MixedInit

    y = torch.arange(2).repeat(300)
    x = (y.float() * 0.5 - 0.25).view(-1, 1, 1, 1) + 0.01 * torch.randn(600, *SHAPE)
    gaussian = ClassGaussianInit.fit(x, y, 2, covariance="diag", clamp=(-1.0, 1.0))
    init = MixedInit(gaussian, UniformInit(-1.0, 1.0), uniform_fraction=0.25)
    assert init.shape == SHAPE
    draws = init.sample(4000, SHAPE, torch.arange(2).repeat(2000), torch.Generator().manual_seed(0))
    # Gaussian draws sit within 0.1 of their class value; uniform ones spread over [-1, 1]
    rough = (draws.flatten(1).std(dim=1) > 0.1).float().mean()
    assert rough == pytest.approx(0.25, abs=0.03)
    rebuilt = init_from_state_dict(load(save(init.state_dict())))
    assert isinstance(rebuilt, MixedInit)
    assert rebuilt.uniform_fraction == pytest.approx(0.25)
    labels = torch.arange(2).repeat(4)
    a = init.sample(8, SHAPE, labels, torch.Generator().manual_seed(1))
    assert torch.equal(a, rebuilt.sample(8, SHAPE, labels, torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="uniform_fraction"):
        MixedInit(gaussian, UniformInit(), 1.5)
