from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from PIL import Image

from model_store import ModelStore
from tests.training._tiny import tiny_config
from training.guard import DivergenceGuard, TrainingDiverged
from training.objective import jem_loss
from training.trainer import Trainer


def test_short_run_writes_a_loadable_final_version(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    trainer = Trainer(tiny_config(), name="tiny", store=store, command="pytest", progress=False)
    result = trainer.fit()
    assert result.ref is not None
    assert result.steps == 8
    loaded = store.load(str(result.ref))
    m = loaded.manifest
    assert m.stage == "final"
    assert m.training["command"] == "pytest"
    assert m.training["seed"] == trainer.config.seed == 1  # the digits-jem preset's, recorded
    split = m.training["split"]
    assert isinstance(split, dict)
    assert split["sizes"] == {"train": 1078, "val": 359, "test": 360}
    assert m.input_spec.height == 8
    assert m.class_names == [str(k) for k in range(10)]
    assert m.sampling is not None
    assert m.sampling.steps == 2
    assert set(m.metrics) == {"val_accuracy"}  # the test split is calibrate's and evaluate's
    assert loaded.buffer is not None
    assert loaded.buffer["x"].shape == (40, 1, 8, 8)
    with Image.open(loaded.path / "samples.png") as grid:
        assert grid.size[0] > grid.size[1] * 0.9  # ten columns (classes) of ten rows
    # the checkpoints of the run were pruned once the final version was written
    assert store.list_versions("tiny") == [int(result.ref.version)]
    x = torch.zeros(2, 1, 8, 8)
    assert torch.equal(loaded.model(x), trainer.model.eval()(x))


def test_checkpoints_keep_only_the_newest(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    config = tiny_config("iterations=13", "checkpoint_every=2", "keep_checkpoints=2")
    config.keep_checkpoints_final = 2
    Trainer(config, name="ck", store=store, progress=False).fit()
    stages = [store.manifest(f"ck:{v}").stage for v in store.list_versions("ck")]
    assert stages == ["checkpoint", "checkpoint", "final"]
    newest = store.list_versions("ck")[1]
    state = json.loads(store.read_file(f"ck:{newest}", "training_state.json"))
    assert state["step"] == 12
    assert "rng" in state
    assert "optimizer" in state


def test_baseline_run_has_no_buffer(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    result = Trainer(
        tiny_config(name="digits-baseline"), name="b", store=store, progress=False
    ).fit()
    assert store.load(str(result.ref)).buffer is None


def test_induced_divergence_rolls_back_then_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ModelStore(tmp_path)
    config = tiny_config("induce_divergence_at=5", "guard_retries=2")
    trainer = Trainer(config, name="div", store=store, progress=False)
    with (
        caplog.at_level(logging.WARNING, logger="training"),
        pytest.raises(TrainingDiverged, match="non-finite loss") as info,
    ):
        trainer.fit()
    rollbacks = [r.getMessage() for r in caplog.records if "rollback" in r.getMessage()]
    assert len(rollbacks) == 2
    assert "back to step 4" in rollbacks[0]
    assert "lr x0.5" in rollbacks[0]
    assert "lr x0.25" in rollbacks[1]
    assert [t.step for t in info.value.trips] == [5, 5, 5]
    assert "--set lr=" in str(info.value)


def test_huge_learning_rate_trips_the_guard(tmp_path: Path) -> None:
    # a real divergence: lr 1e4 drives energies past the guard's bound within a few steps
    config = tiny_config(
        "lr=1e4", "warmup_iters=0", "guard_max_energy=50", "guard_retries=1", "iterations=30"
    )
    with pytest.raises(TrainingDiverged, match=r"energy|non-finite") as info:
        Trainer(config, name="lr", store=ModelStore(tmp_path), progress=False).fit()
    assert len(info.value.trips) == 2


def test_guard_checks() -> None:
    guard = DivergenceGuard(max_energy=10.0, max_pixel=2.0, collapse_drop=0.3)
    ok = jem_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    assert guard.check_step(0, ok) is None
    big = jem_loss(torch.full((2, 3), -100.0), torch.zeros(2, dtype=torch.long))
    trip = guard.check_step(1, big)
    assert trip is not None
    assert "energy" in trip.reason
    pixels = jem_loss(
        torch.zeros(2, 3),
        torch.zeros(2, dtype=torch.long),
        torch.zeros(2, 3),
        torch.full((1,), 5.0),
    )
    trip = guard.check_step(2, pixels)
    assert trip is not None
    assert "pixels" in trip.reason
    assert guard.check_validation(3, 0.9) is None
    assert guard.check_validation(4, 0.7) is None
    trip = guard.check_validation(5, 0.5)
    assert trip is not None
    assert "collapsed" in trip.reason


@pytest.mark.parametrize("buffer", [[], ["buffer_init=uniform", "buffer_size=24"]])
def test_a_jem_resumed_from_its_baseline_at_px_start_is_the_jem_run(
    tmp_path: Path, one_thread: None, buffer: list[str]
) -> None:
    # the emoji recipe's shortcut (docs/emoji.md): before px_start a JEM run is its baseline's run,
    # so the JEM can continue the baseline's checkpoint at px_start, bit for bit; also with other
    # buffer settings (--resume with --set buffer_init=uniform --set buffer_size=24)
    store = ModelStore(tmp_path)
    jem = tiny_config(
        "grad_penalty=0", "px_start=4", "buffer_init=gaussian", *buffer, name="emoji-jem"
    )
    # the emoji baseline preset: the JEM's without the generative terms (same lr, moving average)
    # and, since the seventh round, with label smoothing, which the JEM preset lacks: so the
    # shortcut needs the baseline run without it (docs/emoji.md)
    base = tiny_config(
        "grad_penalty=0",
        "px_start=4",
        "buffer_init=gaussian",
        "label_smoothing=0",
        name="emoji-baseline",
    )
    for config in (jem, base):
        config.dataset, config.data_root = "digits", None
        config.backbone_kwargs, config.augment = {"width": 4}, "crop_flip"
    base.keep_checkpoints_final = 1  # keep the step-4 checkpoint
    Trainer(base, name="base", store=store, progress=False).fit()
    resumed = Trainer(jem, name="resumed", store=store, progress=False)
    resumed.restore("base:1")  # the checkpoint at step 4
    resumed.fit()
    straight = Trainer(jem, name="straight", store=store, progress=False)
    straight.fit()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    for key, value in straight.shipped.state_dict().items():  # and the moving average
        assert torch.equal(value, resumed.shipped.state_dict()[key]), key
    assert torch.equal(straight.buffer.x, resumed.buffer.x)
    assert type(resumed.buffer.init) is type(straight.buffer.init)


def test_resuming_advanced_chains_keeps_them_and_restarts_from_the_new_init(
    tmp_path: Path, one_thread: None
) -> None:
    from jem.buffer import UniformInit

    store = ModelStore(tmp_path)
    config = tiny_config("buffer_init=gaussian", "keep_checkpoints_final=1")
    Trainer(config, name="run", store=store, progress=False).fit()
    saved = store.read_tensors(store.resolve("run:1"), "buffer")  # the step-4 checkpoint's chains
    resumed = Trainer(
        tiny_config("buffer_init=uniform", "reinit_freq=0.5"),
        name="run",
        store=store,
        progress=False,
    )
    resumed.restore("run:1")
    assert torch.equal(resumed.buffer.x, saved["x"])
    assert isinstance(resumed.buffer.init, UniformInit)
    assert resumed.buffer.reinit_freq == 0.5


def test_px_warmup_ramps_the_generative_terms_in_after_px_start(
    tmp_path: Path, one_thread: None
) -> None:
    store = ModelStore(tmp_path)
    ramped = Trainer(
        tiny_config("px_start=2", "px_warmup=4"), name="r", store=store, progress=False
    )
    shares = []
    for step in range(8):
        ramped.step = step
        shares.append(ramped.px_ramp())
    assert shares == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    ramped.step = 0
    ramped.fit()
    plain = Trainer(tiny_config("px_start=2"), name="p", store=store, progress=False)
    plain.fit()
    assert plain.px_ramp() == 1.0
    # the same run until px_start, then a smaller generative pull: different weights
    mine, theirs = ramped.model.state_dict(), plain.model.state_dict()
    assert any(not torch.equal(mine[k], theirs[k]) for k in mine)


@pytest.mark.parametrize(
    ("key", "value"), [("label_smoothing", 0.5), ("mixup_alpha", 1.0), ("cutmix_alpha", 1.0)]
)
def test_a_target_option_reaches_the_trainers_loss(
    tmp_path: Path, one_thread: None, key: str, value: float
) -> None:
    """Label smoothing, mixup and CutMix change the baseline's cross-entropy, draw nothing from
    the trainer's own generator, and are recorded in the manifest."""
    store = ModelStore(tmp_path)
    plain = Trainer(tiny_config(name="digits-baseline"), name="p", store=store, progress=False)
    changed = Trainer(
        tiny_config(f"{key}={value}", name="digits-baseline"),
        name="c",
        store=store,
        progress=False,
    )
    # the same batch (same seed, step 0) and weights: only the target (or the mixing) differs
    assert changed._loss().ce != pytest.approx(plain._loss().ce)
    # the trainer's own generator drew the same numbers: augmentation and noise are unchanged
    assert torch.equal(changed.gen.get_state(), plain.gen.get_state())
    result = changed.fit()
    assert result.ref is not None
    config = store.load(str(result.ref)).manifest.training["config"]
    assert isinstance(config, dict)
    assert config[key] == value  # recorded, so the run can be reproduced
