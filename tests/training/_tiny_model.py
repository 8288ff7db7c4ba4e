"""A small digits classifier trained in about a second, saved to a temporary store: what the
calibration and evaluation tests run on instead of the shipped models."""

from __future__ import annotations

from pathlib import Path

import torch

from jem import JEM, create_backbone
from jem.buffer import Init, ReplayBuffer, UniformInit
from model_store import ModelRef, ModelStore
from tests.cross_entropy_fit import fit_cross_entropy
from training.config import TrainConfig
from training.data import load_digits_dataset


def train_tiny(
    store_root: Path,
    name: str = "tiny",
    steps: int = 60,
    seed: int = 0,
    init: Init | None = None,
) -> ModelRef:
    """~77% test accuracy: good enough to tell the metrics apart from chance. ``init``: the
    replay buffer's restart distribution (default uniform noise)."""
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    data = load_digits_dataset(seed=0)
    x, y = data.train.inputs(), data.train.labels
    model = JEM(create_backbone("digits_cnn", width=8))
    g = torch.Generator().manual_seed(seed)
    fit_cross_entropy(model, x, y, steps=steps, lr=1e-2, generator=g)
    torch.set_num_threads(threads)
    config = TrainConfig(backbone_kwargs={"width": 8}, px_weight=0.0, iterations=steps, seed=seed)
    buffer = ReplayBuffer(40, (1, 8, 8), 10, init or UniformInit(), generator=g)
    draft = {
        "backbone": {"name": "digits_cnn", "kwargs": {"width": 8}},
        "input_spec": data.spec.to_dict(),
        "class_names": data.class_names,
        "training": {"config": config.to_dict(), "split": data.split},
        "sampling": {"steps": 5, "step_size": 1.0, "noise_std": 0.01},
        "files": {},
    }
    draft.pop("files")
    return ModelStore(store_root).save(
        name, model, draft, buffer=buffer.state_dict(), files={"samples.png": b"not really a png"}
    )
