"""A validation-chosen checkpoint (`load_best_model_at_end`, training/best.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from model_store import ModelStore
from tests.training._tiny import tiny_config
from training.data import LabeledImages
from training.trainer import Trainer

# a validation and a checkpoint every 2 of 8 iterations, every checkpoint kept
EVERY_2 = [
    "validate_every=2",
    "checkpoint_every=2",
    "keep_checkpoints=4",
    "keep_checkpoints_final=4",
]


def _weights(store: ModelStore, ref: str) -> dict[str, torch.Tensor]:
    return store.load(ref).model.state_dict()


def _scripted(trainer: Trainer, values: list[float]) -> None:
    """The trainer's next validations read ``values`` (then real figures again)."""
    real, queue = trainer.accuracy, list(values)

    def accuracy(split: LabeledImages, batch_size: int = 500) -> float:
        return queue.pop(0) if split is trainer.data.val and queue else real(split, batch_size)

    trainer.accuracy = accuracy  # type: ignore[method-assign]


@pytest.mark.parametrize(
    ("figures", "chosen"), [([0.5, 0.7, 0.6, 0.55], 4), ([0.5, 0.7, 0.7, 0.6], 6)]
)
def test_the_run_ships_its_best_validations_weights_and_trains_the_same(
    tmp_path: Path, one_thread: None, figures: list[float], chosen: int
) -> None:
    store = ModelStore(tmp_path)
    plain = Trainer(tiny_config(*EVERY_2, "px_weight=0"), name="plain", store=store, progress=False)
    plain.fit()
    config = tiny_config(*EVERY_2, "px_weight=0", "load_best_model_at_end=true")
    best = Trainer(config, name="best", store=store, progress=False)
    _scripted(best, figures)
    result = best.fit()
    record = store.manifest(str(result.ref)).training["selection"]
    assert isinstance(record, dict)
    assert record["validations"] == [
        [2, figures[0]],
        [4, figures[1]],
        [6, figures[2]],
        [8, figures[3]],
    ]
    assert (record["chosen_step"], record["chosen_val_accuracy"]) == (chosen, max(figures))
    assert (record["last_step"], record["last_val_accuracy"]) == (8, figures[3])
    # training is unchanged: the shipped weights are the plain run's checkpoint at the chosen step
    expected = _weights(store, f"plain:{chosen // 2}")
    for key, value in _weights(store, str(result.ref)).items():
        assert torch.equal(value, expected[key]), key
    # and the final figures are measured on them
    val = best.data.val
    with torch.no_grad():
        hits = (store.load(str(result.ref)).model(val.inputs()).argmax(1) == val.labels).float()
    assert result.metrics["val_accuracy"] == pytest.approx(float(hits.mean()))


def test_a_jem_chooses_among_validations_at_full_generative_weight(
    tmp_path: Path, one_thread: None
) -> None:
    config = tiny_config(*EVERY_2, "px_start=2", "px_warmup=4", "load_best_model_at_end=true")
    trainer = Trainer(config, name="jem", store=ModelStore(tmp_path), progress=False)
    result = trainer.fit()
    record = ModelStore(tmp_path).manifest(str(result.ref)).training["selection"]
    assert isinstance(record, dict)
    assert record["candidates_from_step"] == 6
    assert [step for step, _ in record["validations"]] == [2, 4, 6, 8]
    assert record["chosen_step"] in (6, 8)


def test_no_candidate_keeps_the_last_weights_and_says_so(
    tmp_path: Path, one_thread: None, caplog: pytest.LogCaptureFixture
) -> None:
    config = tiny_config("px_start=6", "px_warmup=4", "load_best_model_at_end=true")
    trainer = Trainer(config, name="late", store=ModelStore(tmp_path), progress=False)
    with caplog.at_level(logging.WARNING, logger="training"):
        result = trainer.fit()
    assert "no validation at or after step 10" in caplog.text
    record = ModelStore(tmp_path).manifest(str(result.ref)).training["selection"]
    assert isinstance(record, dict)
    assert (record["chosen_step"], record["chosen_val_accuracy"]) == (8, None)


def test_a_resumed_run_chooses_as_an_uninterrupted_one(tmp_path: Path, one_thread: None) -> None:
    store = ModelStore(tmp_path)
    config = tiny_config(*EVERY_2, "px_weight=0", "ema_decay=0.8", "load_best_model_at_end=true")
    straight = Trainer(config, name="run", store=store, progress=False)
    _scripted(straight, [0.5, 0.7, 0.6, 0.55])
    done = straight.fit()
    resumed = Trainer(config, name="resumed", store=store, progress=False)
    resumed.restore("run:3")  # the step-6 checkpoint: holds step 4's weights, the best so far
    _scripted(resumed, [0.55])
    assert resumed.best is not None
    assert (resumed.best.step, [s for s, _ in resumed.best.history]) == (4, [2, 4, 6])
    again = resumed.fit()
    first = store.manifest(str(done.ref)).training["selection"]
    second = store.manifest(str(again.ref)).training["selection"]
    assert first == second
    expected = _weights(store, str(done.ref))
    for key, value in _weights(store, str(again.ref)).items():
        assert torch.equal(value, expected[key]), key
