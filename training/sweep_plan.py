"""The plan file of `python -m training sweep` (TOML, read with the standard library's `tomllib`):
parsed, every run's config built and checked, its folders found, before anything trains."""

from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.config import (
    KEEP_AND_LOG_KEYS,
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_differences,
)
from training.presets import PRESETS, preset

__all__ = ["Plan", "Run", "differs", "load_plan"]

# what a stored run may differ in from the plan and still count as the planned run: what it
# keeps and logs, where it read its data, and the machine's settings
NOT_COMPARED = KEEP_AND_LOG_KEYS | {"num_threads", "device"}


@dataclass(frozen=True)
class Run:
    variant: str
    seed: int
    overrides: tuple[str, ...]  # `--set` strings, one per key, seed last
    config: TrainConfig

    @property
    def name(self) -> str:
        return f"{self.variant}-s{self.seed}"


@dataclass(frozen=True)
class Plan:
    preset: str
    seeds: tuple[int, ...]
    runs: tuple[Run, ...]
    ood: dict[str, Path] = field(default_factory=dict)


def _setting(key: str, value: Any) -> str:
    """A TOML value as the `--set key=value` string `apply_overrides` parses."""
    if isinstance(value, bool):
        return f"{key}={'true' if value else 'false'}"
    if isinstance(value, dict | list):
        return f"{key}={json.dumps(value)}"
    return f"{key}={value}"


def _last_per_key(settings: list[str]) -> tuple[str, ...]:
    """One setting per key, the last one given, in the order of their last occurrence."""
    last = {s.partition("=")[0].strip(): s for s in settings}
    return tuple(last.values())


def _checked(name: str, settings: list[str], where: str) -> TrainConfig:
    try:
        return apply_overrides(preset(name), settings)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_plan(path: Path, threads: int = 0, extra: tuple[str, ...] = ()) -> Plan:
    """Parse and check a plan file; ``extra`` `key=value` settings (the command line's `--set`)
    go last, over every run's. Relative paths in it are read from the current directory, as
    `train`'s are. Raises ConfigError (one line, naming the table at fault) for anything wrong:
    keys, values, a folder data root or an ``[ood]`` folder that is not a directory."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no plan file {str(path)!r}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    top = ("preset", "seeds", "set", "ood", "variants")
    for key in sorted(set(raw) - set(top)):
        near = difflib.get_close_matches(key, top, n=1, cutoff=0.6)
        hint = f"did you mean {near[0]!r}?" if near else f"the keys are {', '.join(top)}"
        raise ConfigError(f"{path}: unknown top-level key {key!r}; {hint}")
    name = raw.get("preset")
    if name not in PRESETS:
        raise ConfigError(f"{path}: preset must be one of {sorted(PRESETS)}, got {name!r}")
    seeds = raw.get("seeds", [0])
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"{path}: seeds must be a non-empty list of integers, got {seeds!r}")
    variants = raw.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise ConfigError(f"{path}: needs at least one [variants.NAME] table")
    common = [_setting(k, v) for k, v in raw.get("set", {}).items()]
    common += [f"num_threads={threads}"] if threads else []
    _checked(name, common, f"{path}: [set]")  # each mistake blamed where it was made
    _checked(name, [*common, *extra], "--set")
    runs = []
    for variant, keys in variants.items():
        if not isinstance(keys, dict):
            raise ConfigError(f"{path}: variants.{variant} must be a table of config keys")
        if "seed" in keys:
            raise ConfigError(f"{path}: variants.{variant} sets seed; use the plan's seeds")
        own = [_setting(k, v) for k, v in keys.items()]
        for seed in seeds:
            settings = _last_per_key([*common, *own, *extra, f"seed={seed}"])
            config = _checked(name, list(settings), f"{path}: variants.{variant}")
            if config.dataset == "folder" and not (
                config.data_root and Path(config.data_root).is_dir()
            ):
                where = f"variants.{variant}" if "data_root" in keys else "[set] / --data-root"
                raise ConfigError(
                    f"{path}: data_root {config.data_root!r} ({where}) is not a directory, "
                    f"read from {Path.cwd()}"
                )
            runs.append(Run(variant, seed, settings, config))
    ood = {str(k): Path(v) for k, v in raw.get("ood", {}).items()}
    for set_name, folder in ood.items():
        if not folder.is_dir():
            raise ConfigError(f"{path}: [ood] {set_name} = {str(folder)!r} is not a directory")
    return Plan(name, tuple(seeds), tuple(runs), ood)


def differs(stored: Mapping[str, Any], run: Run) -> list[str]:
    """The keys in which a stored run's config differs from the planned run's (NOT_COMPARED
    aside): empty if the stored run is the planned one."""
    return config_differences(stored, run.config.to_dict(), NOT_COMPARED)
