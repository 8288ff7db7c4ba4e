"""Turn a :class:`TrainConfig` and a data set into the objects a run is made of."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from jem import (
    JEM,
    ClassGaussianInit,
    MixedInit,
    ReplayBuffer,
    SGLDConfig,
    UniformInit,
    create_backbone,
)
from jem.backbones import list_backbones
from training.config import ConfigError, TrainConfig
from training.data import Dataset

__all__ = [
    "AUTO_BACKBONES",
    "buffer_capacity",
    "build_buffer",
    "build_model",
    "build_optimizer",
    "compact_buffer",
    "lr_multiplier",
    "resolve_backbone",
    "sgld_config",
]


# backbone="auto": the first row whose largest image side is at most the bound (docs/training.md,
# "Backbones", has their parameter counts and measured costs per iteration)
AUTO_BACKBONES: tuple[tuple[int, str, dict[str, Any]], ...] = (
    (16, "digits_cnn", {"width": 32}),  # the digits recipe's network
    (10**9, "wrn", {"depth": 10, "widen_factor": 2}),  # WRN-10-2: one block per stage
)


def resolve_backbone(config: TrainConfig, data: Dataset) -> tuple[str, dict[str, Any]]:
    """(backbone name, kwargs): ``auto`` resolved by image size, the kwargs completed from the
    data set (channels, classes, size) and then overridden by the config's ``backbone_kwargs``."""
    name = config.backbone
    kwargs: dict[str, Any] = {"in_channels": data.spec.channels, "num_classes": data.num_classes}
    if name == "auto":
        side = max(data.spec.height, data.spec.width)
        name, defaults = next((n, kw) for bound, n, kw in AUTO_BACKBONES if side <= bound)
        kwargs.update(defaults)
    if name == "digits_cnn":
        kwargs["image_size"] = max(data.spec.height, data.spec.width)
    kwargs.update(config.backbone_kwargs)
    return name, kwargs


def build_model(config: TrainConfig, data: Dataset) -> JEM:
    """The JEM of the config's backbone; ConfigError for an unknown backbone or a bad setting."""
    name, kwargs = resolve_backbone(config, data)
    if name not in list_backbones():
        raise ConfigError(f"unknown backbone {name!r}; known: auto, {', '.join(list_backbones())}")
    try:
        return JEM(create_backbone(name, **kwargs))
    except (TypeError, ValueError) as exc:
        settings = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        raise ConfigError(f"backbone {name!r} ({settings}): {exc}") from None


def build_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def lr_multiplier(config: TrainConfig, total: int) -> Callable[[int], float]:
    """Linear warm-up to the base lr over ``warmup_iters``, then x``decay_factor`` at each
    decay point (``lr_schedule="step"``), or ``(1 + cos(pi * t)) / 2`` with t going from 0 at
    the end of the warm-up to 1 at the last step (``"cosine"``, Loshchilov & Hutter 2017's
    annealing without restarts). JEM needs the warm-up: full-size Adam steps on a fresh network
    send the energies of data and samples apart faster than SGLD can follow."""
    warmup = max(0, min(config.warmup_iters, total // 2))
    decays = config.decay_iterations(total)

    def multiplier(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup) if warmup else 1.0
        if config.lr_schedule == "cosine":
            t = min(1.0, max(0, step - warmup) / max(1, total - warmup))
            return warm * 0.5 * (1.0 + math.cos(math.pi * t))
        passed = sum(1 for d in decays if step >= d)
        return warm * config.decay_factor**passed

    return multiplier


def build_buffer(
    config: TrainConfig, data: Dataset, generator: torch.Generator
) -> tuple[ReplayBuffer, UniformInit | ClassGaussianInit | MixedInit]:
    """The replay buffer and the distribution its fresh chains start from.

    ``gaussian`` is JEM++'s per-class Gaussian fitted to the training split only; a full
    covariance for small inputs, diagonal once a D x D matrix per class gets large, at
    1/``buffer_init_pool`` of the resolution (ValueError when it does not divide the image size);
    with ``buffer_init_uniform`` > 0 that fraction of fresh chains is uniform noise instead.
    """
    init: UniformInit | ClassGaussianInit | MixedInit
    lo, hi = data.spec.value_range
    if config.buffer_init == "gaussian":
        x = data.train.inputs()
        pool = config.buffer_init_pool
        covariance: Literal["full", "diag"] = (
            "full" if math.prod(data.spec.shape) <= 1024 * pool * pool else "diag"
        )
        init = ClassGaussianInit.fit(
            x, data.train.labels, data.num_classes, covariance=covariance, clamp=(lo, hi), pool=pool
        )
        if config.buffer_init_uniform > 0:
            init = MixedInit(init, UniformInit(lo, hi), config.buffer_init_uniform)
    else:
        init = UniformInit(lo, hi)
    buffer = ReplayBuffer(
        buffer_capacity(config, data),
        data.spec.shape,
        data.num_classes,
        init,
        reinit_freq=config.reinit_freq,
        generator=generator,
    )
    return buffer, init


BUFFER_MAX = 10_000  # the JEM paper's buffer (for CIFAR's 50,000 training images)
BUFFER_MIN_PER_CLASS = 50


def buffer_capacity(config: TrainConfig, data: Dataset) -> int:
    """``buffer_size``, or for 0 (auto) one chain per training image, at least 50 per class and
    at most 10,000: a buffer much larger than the data set holds chains that are rarely drawn,
    and at 3x32x32 each 10,000 chains are 61 MB on disk (float16) per saved version."""
    if config.buffer_size > 0:
        return config.buffer_size
    wanted = max(len(data.train), BUFFER_MIN_PER_CLASS * data.num_classes)
    return min(BUFFER_MAX, wanted)


def compact_buffer(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A replay buffer's state dict with its chains in float16, for a final version: half the
    bytes, and 2^-11 relative precision, far below SGLD's per-step noise. Checkpoints keep
    float32 so that resuming stays bit-exact; `ReplayBuffer.load_state_dict` reads either."""
    return {k: v.half() if k == "x" else v for k, v in state.items()}


def sgld_config(config: TrainConfig, value_range: tuple[float, float], steps: int) -> SGLDConfig:
    return SGLDConfig(
        steps=steps,
        step_size=config.sgld_step_size,
        noise_std=config.sgld_noise,
        clamp=value_range if config.sgld_clamp else None,
    )
