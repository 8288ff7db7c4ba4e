"""Tiny training settings shared by the trainer tests (seconds, not minutes, on 2 cores)."""

from __future__ import annotations

from training.config import TrainConfig, apply_overrides
from training.presets import preset

TINY = [
    'backbone_kwargs={"width": 4}',
    "batch_size=16",
    "buffer_size=40",
    "sgld_steps=2",
    "sample_steps=2",
    "iterations=8",
    "warmup_iters=2",
    "validate_every=4",
    "checkpoint_every=4",
    "num_threads=1",
    "device=cpu",
    "extra_train=",  # the digits presets' rendered digits: tested on their own
    # the generative term from the first iteration (the digits-jem preset starts it at 1,000, past
    # a tiny run's end); a test of px_start sets its own
    "px_start=0",
    "px_warmup=0",
]


def tiny_config(*overrides: str, name: str = "digits-jem") -> TrainConfig:
    return apply_overrides(preset(name), [*TINY, *overrides])
