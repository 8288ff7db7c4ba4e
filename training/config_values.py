"""Checking and parsing training settings' values: one error per mistake, with a did-you-mean.

`value_problems` checks the string settings of a config against what they may name (data sets,
backbones, backgrounds, devices, every ``Literal``); `coerce` parses a ``--set key=value`` string
as its field's type. Both serve training/config.py's `TrainConfig` and `apply_overrides`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from training.config import TrainConfig

__all__ = ["ConfigError", "coerce", "value_problems"]


class ConfigError(ValueError):
    """An unknown preset or key, or a value that does not parse as the key's type."""


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The config class's resolved type hints, computed once."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _did_you_mean(value: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _one_of(key: str, value: str, allowed: list[str]) -> str:
    listed = ", ".join(map(repr, allowed))
    return f"{key} must be one of {listed}, got {value!r}{_did_you_mean(value, allowed)}"


def _unknown(what: str, value: str, known: list[str]) -> str:
    return f"unknown {what} {value!r}; known: {', '.join(known)}{_did_you_mean(value, known)}"


def value_problems(config: TrainConfig) -> list[str]:
    """The string settings checked against what they may name, so that a typo in a plan or a
    ``--set`` is one error before any data is read, not a failure minutes into a run (values
    from any source: presets, manifests, ``--set`` and sweep plans all pass through here)."""
    import torch  # here, not at the top: the config module stays cheap to import

    from jem.backbones import list_backbones
    from jem.preprocess import BACKGROUND_NAMES, parse_background
    from training.data import DATASETS

    problems = []
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        hint = hints[f.name]
        value = getattr(config, f.name)
        if typing.get_origin(hint) is Literal and value not in typing.get_args(hint):
            problems.append(_one_of(f.name, str(value), list(typing.get_args(hint))))
    if config.dataset not in DATASETS:
        problems.append(_unknown("data set", config.dataset, list(DATASETS)))
    if config.backbone != "auto" and config.backbone not in list_backbones():
        problems.append(_unknown("backbone", config.backbone, ["auto", *list_backbones()]))
    try:
        parse_background(config.background)
    except ValueError as exc:
        problems.append(f"{exc}{_did_you_mean(config.background, list(BACKGROUND_NAMES))}")
    if config.device != "auto":
        try:
            torch.device(config.device)
        except RuntimeError:
            problems.append(
                f"device must be 'auto', 'cpu', 'cuda', 'cuda:N', 'mps' or another torch device, "
                f"got {config.device!r}"
            )
    return problems


def coerce(key: str, raw: str, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if raw.lower() in ("none", "null") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(key, raw, inner[0])
    if origin is Literal:
        if raw in args:
            return raw
        folded = [a for a in args if isinstance(a, str) and a.lower() == raw.lower()]
        if len(folded) == 1:  # "rgb" for "RGB": one spelling it can only mean
            return folded[0]
        raise ConfigError(_one_of(key, raw, list(args)))
    if hint is bool:
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key} is a bool: use true or false, got {raw!r}")
    if hint in (int, float):
        try:
            return hint(raw)
        except ValueError:
            raise ConfigError(f"{key} is {hint.__name__}, got {raw!r}") from None
    if hint is str:
        return raw
    if origin is tuple:
        parts = [p for p in raw.replace("[", "").replace("]", "").split(",") if p.strip()]
        try:
            return tuple(coerce(key, p.strip(), args[0]) for p in parts)
        except ConfigError:
            form = (
                "height,width or one number, e.g. 32,32 or 32"
                if key == "image_size"
                else f"a comma-separated list of {args[0].__name__}s"
            )
            raise ConfigError(f"{key} is {form}, got {raw!r}") from None
    if origin is dict:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(f"{key} is a JSON object, e.g. '{{\"width\": 64}}'") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{key} is a JSON object, got {raw!r}")
        return value
    raise ConfigError(f"{key}: cannot parse values of type {hint}")  # pragma: no cover
