"""Data sets, the JEM objective, the training loop, checkpoints; CLI: `python -m training`.

The names below are imported on first use (PEP 562), so that `python -m training --help`
answers before torch is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.config import ConfigError, TrainConfig, apply_overrides
    from training.data import DATASETS, Dataset, DatasetError, LabeledImages, load_dataset
    from training.guard import DivergenceGuard, TrainingDiverged, Trip
    from training.objective import LossParts, jem_loss
    from training.presets import PRESETS, preset
    from training.trainer import Trainer, TrainResult

_HOME = {
    "training.config": ("ConfigError", "TrainConfig", "apply_overrides"),
    "training.presets": ("PRESETS", "preset"),
    "training.data": ("DATASETS", "Dataset", "DatasetError", "LabeledImages", "load_dataset"),
    "training.guard": ("DivergenceGuard", "TrainingDiverged", "Trip"),
    "training.objective": ("LossParts", "jem_loss"),
    "training.trainer": ("Trainer", "TrainResult"),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}

__all__ = [
    "DATASETS",
    "PRESETS",
    "ConfigError",
    "Dataset",
    "DatasetError",
    "DivergenceGuard",
    "LabeledImages",
    "LossParts",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "Trip",
    "apply_overrides",
    "jem_loss",
    "load_dataset",
    "preset",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'training' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
