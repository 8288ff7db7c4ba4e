"""The moving average of the weights (`ema_decay`, training/ema.py): what a run ships."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from model_store import ModelStore
from tests.training._tiny import tiny_config
from training.config import ConfigError
from training.ema import WeightAverage
from training.rollback import restore_snapshot, snapshot
from training.trainer import Trainer


def test_the_average_follows_the_ema_formula() -> None:
    model = nn.Linear(2, 1)
    average = WeightAverage(model, 0.9)
    iterates = [torch.full_like(model.weight, v) for v in (1.0, 3.0, -2.0, 5.0, 0.5, 7.0)]
    expected = None
    for n, w in enumerate(iterates):
        with torch.no_grad():
            model.weight.copy_(w)
        average.update(model)
        # the first update copies; then TensorFlow's warm-up min(d, (1 + n) / (10 + n))
        d = min(0.9, (1 + n) / (10 + n))  # n updates before this one
        expected = w.clone() if expected is None else d * expected + (1 - d) * w
    assert [average.decay_at(n) for n in (1, 80, 10_000)] == [2 / 11, 0.9, 0.9]
    assert average.updates == 6
    averaged = average.module.state_dict()["weight"]
    assert expected is not None
    assert torch.allclose(averaged, expected)
    assert not any(p.requires_grad for p in average.module.parameters())
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, 1.0)


@pytest.mark.parametrize("value", ["1", "-0.1"])
def test_ema_decay_outside_0_1_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match="ema_decay"):
        tiny_config(f"ema_decay={value}")


def test_a_run_with_ema_validates_and_ships_the_average(tmp_path: Path, one_thread: None) -> None:
    store = ModelStore(tmp_path)
    trainer = Trainer(tiny_config("ema_decay=0.9"), name="ema", store=store, progress=False)
    result = trainer.fit()
    assert trainer.ema is not None
    assert trainer.ema.updates == 8  # one per optimiser step
    loaded = store.load(str(result.ref))
    assert loaded.manifest.training["weights"] == "ema"
    config = loaded.manifest.training["config"]
    assert isinstance(config, dict)
    assert config["ema_decay"] == 0.9
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        shipped = loaded.model.eval()(x)
        assert torch.equal(shipped, trainer.ema.module.eval()(x))
        assert not torch.allclose(shipped, trainer.model.eval()(x))  # not the last iterate
    # the recorded validation accuracy is the shipped weights'
    val = trainer.data.val
    with torch.no_grad():
        hits = (loaded.model(val.inputs()).argmax(1) == val.labels).float().mean()
    assert result.metrics["val_accuracy"] == pytest.approx(float(hits))


def test_resuming_a_run_with_ema_continues_both_weights_bit_for_bit(
    tmp_path: Path, one_thread: None
) -> None:
    store = ModelStore(tmp_path)
    config = tiny_config("ema_decay=0.8", "keep_checkpoints_final=1")  # keeps the step-4 one
    straight = Trainer(config, name="run", store=store, progress=False)
    straight.fit()
    checkpoint = store.manifest("run:1")
    assert checkpoint.stage == "checkpoint"
    assert checkpoint.training["step"] == 4
    resumed = Trainer(config, name="resumed", store=store, progress=False)
    resumed.restore("run:1")
    assert resumed.ema is not None
    assert resumed.ema.updates == 4
    resumed.fit()
    assert straight.ema is not None
    for mine, theirs in (
        (resumed.model, straight.model),
        (resumed.ema.module, straight.ema.module),
    ):
        for key, value in theirs.state_dict().items():
            assert torch.equal(value, mine.state_dict()[key]), key


def test_a_checkpoint_without_ema_starts_the_average_at_its_weights(
    tmp_path: Path, one_thread: None
) -> None:
    store = ModelStore(tmp_path)
    Trainer(tiny_config("keep_checkpoints_final=1"), name="run", store=store, progress=False).fit()
    resumed = Trainer(tiny_config("ema_decay=0.9"), name="run", store=store, progress=False)
    resumed.restore("run:1")
    assert resumed.ema is not None
    assert resumed.ema.updates == 1
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, resumed.ema.module.state_dict()[key]), key


def test_a_rollback_restores_the_average(tmp_path: Path, one_thread: None) -> None:
    trainer = Trainer(
        tiny_config("ema_decay=0.9", "iterations=4"),
        name="rb",
        store=ModelStore(tmp_path),
        progress=False,
    )
    trainer.fit()
    assert trainer.ema is not None
    good = snapshot(trainer)
    before = {k: v.clone() for k, v in trainer.ema.module.state_dict().items()}
    trainer.total = 8
    trainer.fit()
    assert trainer.ema.updates == 8
    restore_snapshot(trainer, good)
    assert trainer.ema.updates == 4
    for key, value in before.items():
        assert torch.equal(value, trainer.ema.module.state_dict()[key]), key
