"""Training on a CUDA device (marked `cuda`: skipped without one; `make gpu-check` runs them
with CUDA_VISIBLE_DEVICES set)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model_store import ModelStore
from tests.training._tiny import tiny_config
from training import Trainer
from training.batches import augment

pytestmark = pytest.mark.cuda


def test_augment_on_the_device_equals_the_cpu() -> None:
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for mode in ("crop", "crop_flip"):
        cpu = augment(x, mode, torch.Generator().manual_seed(1))
        gpu = augment(x.cuda(), mode, torch.Generator().manual_seed(1))
        assert torch.equal(gpu.cpu(), cpu)


def test_training_on_cuda_uses_the_device_path(tmp_path: Path) -> None:
    config = tiny_config("device=cuda", "iterations=20", "validate_every=10")
    trainer = Trainer(config, name="cuda-tiny", store=ModelStore(tmp_path), progress=False)
    result = trainer.fit()
    assert trainer.cuda is not None
    assert trainer.cuda.resident
    assert trainer.cuda.graphed
    assert result.steps == 20
    assert 0.0 <= result.metrics["val_accuracy"] <= 1.0


def test_the_screen_of_a_model_on_the_device_equals_the_cpu(tmp_path: Path) -> None:
    # `training sweep` screens on the GPU (`--screen-device auto`): the chunks go to the model's
    # device and the results come back to the CPU, with the CPU's figures
    from training.eval_metrics import dataset_for
    from training.screen import screen_model

    store = ModelStore(tmp_path)
    ref = Trainer(tiny_config("device=cpu"), name="s", store=store, progress=False).fit().ref
    on = {d: store.load(str(ref), device=d) for d in ("cpu", "cuda")}
    data = dataset_for(on["cpu"].manifest)
    cpu, gpu = (screen_model(on[d], data) for d in ("cpu", "cuda"))
    assert gpu["accuracy"] == pytest.approx(cpu["accuracy"], abs=0.01)
    for name, scores in cpu["auroc"].items():
        for score, value in scores.items():
            assert gpu["auroc"][name][score] == pytest.approx(value, abs=0.02), (name, score)
