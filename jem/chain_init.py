"""The distributions fresh SGLD chains start from (the replay buffer's ``init``, jem.buffer).

JEM (Grathwohl et al. 2020) starts chains from uniform noise. JEM++ (Yang & Ji 2021) starts them
from a per-class Gaussian fitted to the data instead: short chains then start near the data
manifold and training is much more stable. For inputs too large for a full covariance per
class, the Gaussian can be fitted at a lower resolution (``pool``): full covariance on images
average-pooled ``pool`` x ``pool``, samples upsampled back, so fresh chains are smooth and keep the
class's colour correlations instead of being per-pixel independent noise (a diagonal covariance).
:class:`MixedInit` draws a fraction of the fresh chains from uniform noise instead (JEM's init),
so rough images stay among the negatives too.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ClassGaussianInit", "MixedInit", "UniformInit", "init_from_state_dict"]

_UNIFORM, _CLASS_GAUSSIAN, _MIXED = 0, 1, 2


class UniformInit:
    """Uniform noise on [low, high]^D: JEM's original chain initialisation."""

    def __init__(self, low: float = -1.0, high: float = 1.0) -> None:
        if not low < high:
            raise ValueError(f"need low < high, got {low}, {high}")
        self.low, self.high = float(low), float(high)

    def sample(
        self,
        n: int,
        shape: tuple[int, ...],
        y: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        u = torch.rand((n, *shape), generator=generator)
        return self.low + (self.high - self.low) * u

    def state_dict(self) -> dict[str, Tensor]:
        return {
            "kind": torch.tensor([_UNIFORM]),
            "range": torch.tensor([self.low, self.high], dtype=torch.float64),
        }


class ClassGaussianInit:
    """One Gaussian N(mu_k, Sigma_k) per class k, fitted to data (JEM++), clamped to the data range.

    covariance="full" keeps each class's correlations (pixel strokes) and samples through the
    Cholesky factor L_k (x = mu_k + L_k z); "diag" keeps per-dimension variances only, for inputs
    too large for a D x D matrix per class (32x32x3 -> 3072^2 floats per class).

    ``pool`` > 1 (images (C, H, W) only): the Gaussian lives on the images average-pooled
    ``pool`` x ``pool`` (mean and scale have C * (H // pool) * (W // pool) dimensions; 32x32x3
    at pool 4 -> 192, a 192^2 full covariance per class), and samples are upsampled bilinearly
    to ``shape``: smooth images with the class's colour correlations.
    """

    def __init__(
        self,
        mean: Tensor,
        scale: Tensor,
        shape: tuple[int, ...],
        clamp: tuple[float, float] | None = (-1.0, 1.0),
        pool: int = 1,
    ) -> None:
        k, d = mean.shape
        self.shape, self.pool = tuple(shape), int(pool)
        fitted = self.fitted_shape
        if d != math.prod(fitted):
            raise ValueError(
                f"mean has {d} dimensions, shape {shape} at pool {pool} has {math.prod(fitted)}"
            )
        if scale.shape not in ((k, d), (k, d, d)):
            raise ValueError(f"scale must be (K, D) or (K, D, D), got {tuple(scale.shape)}")
        self.mean = mean.detach().float().contiguous()
        self.scale = scale.detach().float().contiguous()  # std (K, D) or Cholesky factor (K, D, D)
        self.clamp = clamp
        self.covariance: Literal["full", "diag"] = "full" if scale.ndim == 3 else "diag"

    @property
    def num_classes(self) -> int:
        return int(self.mean.shape[0])

    @property
    def fitted_shape(self) -> tuple[int, ...]:
        """The shape the Gaussian lives at: ``shape``, or (C, H // pool, W // pool)."""
        if self.pool == 1:
            return self.shape
        if self.pool < 1 or len(self.shape) != 3:
            raise ValueError(f"pool {self.pool} needs pool >= 1 and (C, H, W) images")
        c, h, w = self.shape
        if h % self.pool or w % self.pool:
            raise ValueError(f"pool {self.pool} must divide the image size {h}x{w}")
        return (c, h // self.pool, w // self.pool)

    @classmethod
    def fit(
        cls,
        x: Tensor,
        y: Tensor,
        num_classes: int,
        covariance: Literal["full", "diag"] = "full",
        clamp: tuple[float, float] | None = (-1.0, 1.0),
        jitter: float = 1e-4,
        pool: int = 1,
    ) -> ClassGaussianInit:
        """Per-class mean and covariance of `x` (N, *shape) by labels `y` (N,), at 1/``pool`` of
        the resolution (see the class); raises ValueError for a pool that does not fit."""
        if covariance not in ("full", "diag"):
            raise ValueError(f'covariance must be "full" or "diag", got {covariance!r}')
        x = x.detach().cpu()
        if pool != 1:
            if pool < 1 or x.ndim != 4 or x.shape[2] % pool or x.shape[3] % pool:
                raise ValueError(f"pool {pool} must be >= 1 and divide the (N, C, H, W) images")
            x = F.avg_pool2d(x.double(), pool)
        flat, y = x.reshape(x.shape[0], -1).double(), y.cpu()
        d = flat.shape[1]
        means, scales = [], []
        for k in range(num_classes):
            xk = flat[y == k]
            if xk.shape[0] == 0:
                raise ValueError(f"class {k} has no examples to fit its Gaussian")
            mu = xk.mean(0)
            centred = xk - mu
            denom = max(xk.shape[0] - 1, 1)
            if covariance == "diag":
                scales.append((centred.pow(2).sum(0) / denom + jitter).sqrt())
            else:
                # a little jitter on the diagonal: pixels that never vary (image borders) make
                # the sample covariance singular, and Cholesky needs it positive definite
                cov = centred.T @ centred / denom + jitter * torch.eye(d, dtype=flat.dtype)
                scales.append(torch.linalg.cholesky(cov))
            means.append(mu)
        shape = tuple(x.shape[1:])
        if pool != 1:
            shape = (shape[0], shape[1] * pool, shape[2] * pool)
        return cls(torch.stack(means), torch.stack(scales), shape, clamp, pool)

    def sample(
        self,
        n: int,
        shape: tuple[int, ...],
        y: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        if tuple(shape) != self.shape:
            raise ValueError(f"this init was fitted to shape {self.shape}, asked for {shape}")
        if y is None:  # no labels: pick classes uniformly
            y = torch.randint(0, self.num_classes, (n,), generator=generator)
        y = y.long().cpu()
        z = torch.randn((n, self.mean.shape[1]), generator=generator)
        if self.covariance == "full":
            # one matmul per class present: gathering a (D, D) factor per sample would not fit
            x = torch.empty_like(z)
            for k in y.unique().tolist():
                rows = y == k
                x[rows] = self.mean[k] + z[rows] @ self.scale[k].T
        else:
            x = self.mean[y] + self.scale[y] * z
        if self.pool != 1:
            x = x.reshape(n, *self.fitted_shape)
            x = F.interpolate(x, size=self.shape[1:], mode="bilinear", align_corners=False)
        if self.clamp is not None:
            x = x.clamp(*self.clamp)
        return x.reshape(n, *shape)

    def state_dict(self) -> dict[str, Tensor]:
        d = {
            "kind": torch.tensor([_CLASS_GAUSSIAN]),
            "mean": self.mean.clone(),
            "scale": self.scale.clone(),
            "shape": torch.tensor(self.shape),
        }
        if self.pool != 1:  # absent in buffers saved before pooling existed: pool 1
            d["pool"] = torch.tensor([self.pool])
        if self.clamp is not None:
            d["clamp"] = torch.tensor(self.clamp, dtype=torch.float64)
        return d


class MixedInit:
    """Per-class Gaussian draws (JEM++), each replaced with probability ``uniform_fraction`` by
    uniform noise on the data range (JEM): smooth, class-like chain starts and rough ones."""

    def __init__(
        self, gaussian: ClassGaussianInit, uniform: UniformInit, uniform_fraction: float
    ) -> None:
        if not 0.0 <= uniform_fraction <= 1.0:
            raise ValueError(f"uniform_fraction must be in [0, 1], got {uniform_fraction}")
        self.gaussian, self.uniform = gaussian, uniform
        self.uniform_fraction = float(uniform_fraction)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.gaussian.shape

    def sample(
        self,
        n: int,
        shape: tuple[int, ...],
        y: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        x = self.gaussian.sample(n, shape, y, generator)
        noisy = torch.rand(n, generator=generator) < self.uniform_fraction
        n_noisy = int(noisy.sum())
        if n_noisy:
            x[noisy] = self.uniform.sample(n_noisy, shape, None, generator)
        return x

    def state_dict(self) -> dict[str, Tensor]:
        d = {
            "kind": torch.tensor([_MIXED]),
            "uniform_fraction": torch.tensor([self.uniform_fraction], dtype=torch.float64),
        }
        d.update({f"gaussian.{k}": v for k, v in self.gaussian.state_dict().items()})
        d.update({f"uniform.{k}": v for k, v in self.uniform.state_dict().items()})
        return d


Init = UniformInit | ClassGaussianInit | MixedInit


def init_from_state_dict(d: dict[str, Tensor]) -> Init:
    """Rebuild an init distribution from its `state_dict()`."""
    kind = int(d["kind"][0])
    if kind == _MIXED:
        gaussian = init_from_state_dict(_part(d, "gaussian."))
        uniform = init_from_state_dict(_part(d, "uniform."))
        if not isinstance(gaussian, ClassGaussianInit) or not isinstance(uniform, UniformInit):
            raise ValueError("a mixed init holds one class-Gaussian and one uniform init")
        return MixedInit(gaussian, uniform, float(d["uniform_fraction"][0]))
    if kind == _UNIFORM:
        low, high = d["range"].tolist()
        return UniformInit(low, high)
    if kind == _CLASS_GAUSSIAN:
        clamp = None
        if "clamp" in d:
            lo, hi = d["clamp"].tolist()
            clamp = (float(lo), float(hi))
        shape = tuple(int(s) for s in d["shape"].tolist())
        pool = int(d["pool"][0]) if "pool" in d else 1
        return ClassGaussianInit(d["mean"], d["scale"], shape, clamp, pool)
    raise ValueError(f"unknown init kind {kind} in buffer state")


def _part(d: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k.removeprefix(prefix): v for k, v in d.items() if k.startswith(prefix)}
