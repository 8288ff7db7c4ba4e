"""The one preprocessing contract: uint8 images <-> float tensors in [-1, 1].

Training, the service and the sampler all go through these two functions, so a model never sees
a differently scaled input at serving time than it saw in training.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from jem.normalize import NORMALIZATIONS

__all__ = [
    "BACKGROUND_NAMES",
    "InputSpec",
    "parse_background",
    "tensor_to_uint8",
    "uint8_to_tensor",
]

ColorMode = Literal["L", "RGB"]
Resample = Literal["nearest", "bilinear", "bicubic", "lanczos", "box"]
_COLOR_MODES = ("L", "RGB")
_RESAMPLES = ("nearest", "bilinear", "bicubic", "lanczos", "box")


@dataclass(frozen=True)
class InputSpec:
    """What a model takes as input, stored in its manifest."""

    channels: int
    height: int
    width: int
    color_mode: ColorMode
    invert: bool = False
    resample: Resample = "box"
    value_range: tuple[float, float] = (-1.0, 1.0)
    # what transparent pixels become: "auto" = white for `invert` (dark-on-light) models, else
    # black (the behaviour of every model saved before this field existed); or "white", "black",
    # "#rrggbb"
    background: str = "auto"
    # the model's own input normalisation, named and versioned (`jem.normalize.NORMALIZATIONS`):
    # "digits-v1" turns a photographed or drawn digit into the form of scikit-learn's digits;
    # None (every model saved before this field existed) = a plain resize
    normalization: str | None = None

    def __post_init__(self) -> None:
        if min(self.channels, self.height, self.width) < 1:
            raise ValueError(f"channels, height and width must be >= 1, got {self.shape}")
        if self.color_mode not in _COLOR_MODES:
            raise ValueError(f"color_mode must be one of {_COLOR_MODES}, got {self.color_mode!r}")
        if self.channels != (1 if self.color_mode == "L" else 3):
            raise ValueError(
                f"color_mode {self.color_mode!r} does not match channels={self.channels}"
            )
        if self.resample not in _RESAMPLES:
            raise ValueError(f"resample must be one of {_RESAMPLES}, got {self.resample!r}")
        parse_background(self.background)
        if self.normalization is not None:
            if self.normalization not in NORMALIZATIONS:
                raise ValueError(
                    f"normalization must be null or one of {NORMALIZATIONS}, "
                    f"got {self.normalization!r}"
                )
            if self.color_mode != "L":
                raise ValueError(f"normalization {self.normalization!r} needs color_mode 'L'")
        lo, hi = self.value_range
        if not lo < hi:
            raise ValueError(f"value_range must be (low, high) with low < high, got {lo, hi}")
        # JSON gives lists back: normalise to a tuple of floats so specs compare equal
        object.__setattr__(self, "value_range", (float(lo), float(hi)))

    @property
    def background_rgb(self) -> tuple[int, int, int]:
        """The background colour as 0..255 RGB (resolves "auto")."""
        if self.background == "auto":
            return (255, 255, 255) if self.invert else (0, 0, 0)
        return parse_background(self.background)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["value_range"] = list(self.value_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown InputSpec fields: {sorted(unknown)}")
        d = dict(d)
        if "value_range" in d:
            lo, hi = d["value_range"]
            d["value_range"] = (float(lo), float(hi))
        return cls(**d)


_NAMED_BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0)}
BACKGROUND_NAMES = ("auto", *_NAMED_BACKGROUNDS)  # the spellings besides "#rrggbb"


def parse_background(value: str) -> tuple[int, int, int]:
    """ "white", "black" or "#rrggbb" -> RGB; "auto" -> black (see `InputSpec.background_rgb`).

    Raises ValueError naming the accepted spellings.
    """
    if value == "auto":
        return (0, 0, 0)
    if value in _NAMED_BACKGROUNDS:
        return _NAMED_BACKGROUNDS[value]
    if len(value) == 7 and value.startswith("#"):
        try:
            return (int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16))
        except ValueError:
            pass
    names = ", ".join(repr(name) for name in BACKGROUND_NAMES)
    raise ValueError(f"background must be {names} or '#rrggbb', got {value!r}")


def _scale(x: Tensor, value_range: tuple[float, float]) -> Tensor:
    """float32 values 0..255 -> the model's value range (the contract's arithmetic)."""
    lo, hi = value_range
    if (lo, hi) == (-1.0, 1.0):
        return x / 127.5 - 1.0
    return lo + x / 255.0 * (hi - lo)


@functools.cache
def _lookup(value_range: tuple[float, float]) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The float32 value of each uint8 value 0..255, by the same torch ops as a tensor input.

    The ops are elementwise, so a look-up gives bit-identical values; for a small batch (one
    digit) it costs a fraction of the four torch dispatches (py-spy: 4% of a single-image
    request's CPU time went to them, docs/benchmarks-peers.md).
    """
    table = _scale(torch.arange(256, dtype=torch.float32), value_range).numpy()
    table.setflags(write=False)
    return table


def uint8_to_tensor(arr: np.ndarray[Any, Any] | Tensor, spec: InputSpec) -> Tensor:
    """(B,H,W,C), (H,W,C) or (H,W) uint8 -> float32 (B,C,H,W) with x = u8 / 127.5 - 1.

    For a non-default `spec.value_range` (lo, hi) the map is lo + u8 / 255 * (hi - lo).
    """
    is_uint8 = arr.dtype == np.uint8 if isinstance(arr, np.ndarray) else arr.dtype == torch.uint8
    if not is_uint8:
        raise TypeError(f"expected a uint8 image array, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"expected (B,H,W,C), (H,W,C) or (H,W), got shape {tuple(arr.shape)}")
    b, h, w, c = arr.shape
    if (c, h, w) != spec.shape:
        raise ValueError(
            f"image of shape HWC={(h, w, c)} does not match the model's input "
            f"HWC={(spec.height, spec.width, spec.channels)}; resize/convert it first"
        )
    if isinstance(arr, np.ndarray):  # the uint8 values in NCHW order, then looked up
        # (one channel: NHWC and NCHW hold the values in the same order, no transpose)
        nchw = arr.reshape(b, 1, h, w) if c == 1 else arr.transpose(0, 3, 1, 2)
        return torch.from_numpy(_lookup(spec.value_range).take(nchw))  # a new C-order array
    return _scale(arr.permute(0, 3, 1, 2).to(torch.float32), spec.value_range).contiguous()


def tensor_to_uint8(x: Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> Tensor:
    """(B,C,H,W) float in [-1, 1] -> uint8 (B,H,W,C): u8 = round((x + 1) * 127.5), clamped."""
    if x.ndim != 4:
        raise ValueError(f"expected a (B,C,H,W) tensor, got shape {tuple(x.shape)}")
    lo, hi = value_range
    x = x.detach().to(torch.float32)
    if (lo, hi) == (-1.0, 1.0):
        u = torch.round((x + 1.0) * 127.5)
    else:
        u = torch.round((x - lo) / (hi - lo) * 255.0)
    return u.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu()
