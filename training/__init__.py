"""Data sets, the JEM objective, the training loop, checkpoints; CLI: `python -m training`."""

from training.config import PRESETS, ConfigError, TrainConfig, apply_overrides, preset
from training.data import DATASETS, Dataset, DatasetError, LabeledImages, load_dataset
from training.guard import DivergenceGuard, TrainingDiverged, Trip
from training.objective import LossParts, jem_loss
from training.trainer import Trainer, TrainResult

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
