"""Backbones: networks that map images to logits, behind one small timm-style factory.

Every backbone exposes `.num_classes`, `.forward_features(x) -> (B, D)` and
`.forward_head(feats) -> (B, K)`; `forward` is the two composed. None of them uses batch
norm: JEM evaluates the network on data and on SGLD samples alternately, and batch statistics
mixing the two make training diverge (Grathwohl et al. 2020 drop it for this reason).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DigitsCNN",
    "WideResNet",
    "create_backbone",
    "list_backbones",
    "register_backbone",
]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

F_ = TypeVar("F_", bound=Callable[..., nn.Module])


def register_backbone(name: str) -> Callable[[F_], F_]:
    """Register a backbone constructor under `name` (a decorator, as timm's `register_model`)."""

    def decorator(fn: F_) -> F_:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return decorator


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def create_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Build the backbone registered as `name` with `kwargs` (as stored in a checkpoint)."""
    try:
        fn = _REGISTRY[name]
    except KeyError:
        known = ", ".join(list_backbones())
        raise ValueError(f"unknown backbone {name!r}; known backbones: {known}") from None
    return fn(**kwargs)


# -----------------------------------------------------------------------------
# the shape every backbone shares: features -> linear head -> logits (timm's split)


class Backbone(nn.Module):
    """Subclasses set `num_classes` and `head` and define `forward_features` (B, ...) -> (B, D)."""

    num_classes: int
    head: nn.Linear

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_head(self, feats: Tensor) -> Tensor:
        logits: Tensor = self.head(feats)
        return logits

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


# -----------------------------------------------------------------------------
# a compact conv net for small images: the 8x8 digits, and (width 32) 16x16 colour images


class DigitsCNN(Backbone):
    """3x3 convs with SiLU, stride-2 downsampling to <= 4x4, global average pool, linear head.

    SiLU rather than ReLU: SGLD follows grad_x E(x), and a ReLU net's input gradient is piecewise
    constant (and zero wherever units are dead), so Langevin chains jump between linear regions
    instead of sliding down a smooth energy surface. SiLU is smooth with non-zero gradient almost
    everywhere. Any `in_channels` and `image_size`; at 3x32x32 and 6 classes 140k parameters at
    width=32 and 556k at width=64 (docs/training.md, "Backbones", has costs per iteration).
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, image_size: int = 8, width: int = 64
    ) -> None:
        super().__init__()
        if image_size < 4:
            raise ValueError(f"image_size must be >= 4, got {image_size}")
        self.num_classes = num_classes
        self.image_size = image_size
        self.num_features = 2 * width
        # halve the resolution until the feature map is at most 4x4 (8 -> 4, 16 -> 8 -> 4, ...)
        n_down = max(1, math.ceil(math.log2(image_size / 4)))
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.SiLU(),
        ]
        ch = width
        for _ in range(n_down):
            layers += [nn.Conv2d(ch, 2 * width, 3, stride=2, padding=1), nn.SiLU()]
            ch = 2 * width
        layers += [nn.Conv2d(ch, ch, 3, padding=1), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(ch, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        feats: Tensor = self.features(x)
        return feats.mean(dim=(2, 3))


@register_backbone("digits_cnn")
def digits_cnn(
    in_channels: int = 1, num_classes: int = 10, image_size: int = 8, width: int = 64
) -> DigitsCNN:
    return DigitsCNN(in_channels, num_classes, image_size, width)


# -----------------------------------------------------------------------------
# Wide-ResNet (Zagoruyko & Komodakis 2016) as in the JEM paper: pre-activation blocks,
# no normalisation layers, LeakyReLU


class _WideBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float, leak: float) -> None:
        super().__init__()
        self.act = nn.LeakyReLU(leak)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=stride, padding=1)
        # a 1x1 projection only where the residual changes shape
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.dropout(self.conv1(self.act(x)))
        out = self.conv2(self.act(out))
        residual: Tensor = self.shortcut(x)
        return out + residual


class WideResNet(Backbone):
    """WRN-depth-k: three stages of n = (depth - 4) / 6 blocks with 16k, 32k, 64k channels."""

    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 10,
        in_channels: int = 3,
        num_classes: int = 10,
        dropout: float = 0.0,
        leak: float = 0.2,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"Wide-ResNet depth must be 6n + 4 with n >= 1, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.num_classes = num_classes
        self.num_features = widths[3]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        blocks: list[nn.Module] = []
        c_in = widths[0]
        for stage, c_out in enumerate(widths[1:]):
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1
                blocks.append(_WideBlock(c_in, c_out, stride, dropout, leak))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.act = nn.LeakyReLU(leak)
        self.head = nn.Linear(widths[3], num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        out = self.act(self.blocks(self.conv1(x)))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


@register_backbone("wrn")
def wrn(
    depth: int = 28,
    widen_factor: int = 10,
    in_channels: int = 3,
    num_classes: int = 10,
    dropout: float = 0.0,
    leak: float = 0.2,
) -> WideResNet:
    return WideResNet(depth, widen_factor, in_channels, num_classes, dropout, leak)
