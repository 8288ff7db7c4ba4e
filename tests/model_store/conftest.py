"""Fixtures: a store in a temporary directory and a tiny, seeded JEM to put in it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from jem import JEM, create_backbone
from model_store import ModelRef, ModelStore

SEED = 0
BACKBONE_KWARGS: dict[str, Any] = {"width": 8}


def _tiny_model(seed: int = SEED) -> JEM:
    torch.manual_seed(seed)
    return JEM(create_backbone("digits_cnn", **BACKBONE_KWARGS)).eval()


def _make_draft(stage: str = "final", **changes: Any) -> dict[str, Any]:
    draft: dict[str, Any] = {
        "stage": stage,
        "backbone": {"name": "digits_cnn", "kwargs": dict(BACKBONE_KWARGS)},
        "input_spec": {"channels": 1, "height": 8, "width": 8, "color_mode": "L", "invert": False},
        "class_names": [str(i) for i in range(10)],
        "training": {"seed": SEED, "px_weight": 1.0, "epochs": 1},
    }
    draft.update(changes)
    return draft


DraftFn = Callable[..., dict[str, Any]]


@pytest.fixture
def make_draft() -> DraftFn:
    """make_draft(stage="final", **changes) -> a valid manifest draft (a fresh dict each call)."""
    return _make_draft


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "store")


@pytest.fixture
def model() -> JEM:
    """digits_cnn(width=8) under JEM: ~4.5k parameters, seeded."""
    return _tiny_model()


SaveFn = Callable[..., ModelRef]


@pytest.fixture
def save(store: ModelStore, model: JEM) -> SaveFn:
    """save(name="digits", stage="final", **kwargs) with the tiny model and a valid draft."""

    def _save(name: str = "digits", stage: str = "final", **kwargs: Any) -> ModelRef:
        return store.save(name, kwargs.pop("model", model), _make_draft(stage), **kwargs)

    return _save
