"""Training health figures (training/health.py) and their place in the trainer."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from model_store import ModelStore
from tests.training._tiny import tiny_config
from training.data import load_digits_dataset
from training.health import NOISE_WARNING, HealthMonitor, near_chance, never_starts, roughness
from training.trainer import Trainer


@pytest.fixture(scope="module")
def monitor() -> HealthMonitor:
    data = load_digits_dataset()
    return HealthMonitor(
        data.train.inputs(), data.train.labels, data.val.inputs(), data.spec.value_range
    )


def test_roughness_separates_noise_from_images() -> None:
    noise = torch.rand(8, 1, 8, 8) * 2 - 1
    flat = torch.zeros(8, 1, 8, 8)
    assert roughness(flat).tolist() == [0.0] * 8
    assert float(roughness(noise).mean()) == pytest.approx(2 / 3, abs=0.1)  # E|U - U'| on [-1, 1]


def test_noise_distance_is_0_for_noise_and_1_for_data(
    monitor: HealthMonitor, one_thread: None
) -> None:
    model = Trainer(tiny_config(), name="h", progress=False).model
    noise = torch.rand(300, 1, 8, 8, generator=torch.Generator().manual_seed(5)) * 2 - 1
    on_noise = monitor.measure(1, model, noise)
    on_data = monitor.measure(2, model, monitor.x_val)
    assert abs(on_noise.noise_distance) < 0.05
    assert on_data.noise_distance == pytest.approx(1.0)
    assert on_data.data_mean == pytest.approx(on_data.buffer_mean)
    assert [h.step for h in monitor.history] == [1, 2]
    assert 0.0 <= on_noise.judge_agreement <= 1.0


def test_warning_once_when_chains_stay_noise(monitor: HealthMonitor, one_thread: None) -> None:
    model = Trainer(tiny_config(), name="h", progress=False).model
    noise = torch.rand(300, 1, 8, 8, generator=torch.Generator().manual_seed(6)) * 2 - 1
    health = monitor.measure(500, model, noise)
    assert health.noise_distance < NOISE_WARNING
    assert monitor.warning(health, generative_steps=100) is None  # too early to tell
    message = monitor.warning(health, generative_steps=500)
    assert message is not None
    assert "not learning" in message
    assert monitor.warning(health, generative_steps=600) is None  # said once
    assert monitor.summary()["warnings"] == [message]


def test_trainer_logs_health_into_the_manifest_without_changing_the_run(
    tmp_path: Path, one_thread: None
) -> None:
    config = tiny_config("px_start=3")
    watched = Trainer(config, name="w", store=ModelStore(tmp_path), progress=False)
    result = watched.fit()
    assert result.ref is not None
    health = ModelStore(tmp_path).manifest(str(result.ref)).training["health"]
    assert isinstance(health, dict)
    history = health["history"]
    assert isinstance(history, list)
    assert [h["step"] for h in history] == [4, 8]  # validations after px_start
    assert set(history[0]) >= {"energy_data", "energy_buffer", "noise_distance", "judge_agreement"}
    # the same seeded run with no monitor: bit-identical weights (it draws no random numbers)
    blind = Trainer(config, name="b", store=ModelStore(tmp_path), progress=False)
    blind.health = None
    blind.fit()
    for key, value in watched.model.state_dict().items():
        assert torch.equal(value, blind.model.state_dict()[key]), key


def test_a_jem_run_that_ends_before_its_generative_term_starts_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert never_starts(px_weight=1.0, px_start=100, iterations=2000) is None
    assert never_starts(px_weight=0.0, px_start=1000, iterations=300) is None  # a baseline
    warning = never_starts(px_weight=0.3, px_start=1000, iterations=300)
    assert warning is not None
    assert "--set px_start=100" in warning
    store = ModelStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="training"):
        Trainer(tiny_config("px_start=8"), name="ce", store=store, progress=False).fit()
        Trainer(tiny_config("px_start=4"), name="jem", store=store, progress=False).fit()
    warned = [r.getMessage() for r in caplog.records if "never starts" in r.getMessage()]
    assert warned == [never_starts(1.0, 8, 8)]


def test_a_classifier_near_chance_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newcomer's run sat at 0.35 validation accuracy on 4 classes (chance 0.25) while every
    health figure looked like the good run's: only the accuracy says the classes are not learnt."""
    assert near_chance(step=1200, total=2000, val_accuracy=0.35, num_classes=4) is not None
    assert "near chance (0.25 for 4 classes)" in str(near_chance(1200, 2000, 0.35, 4))
    assert near_chance(step=1200, total=2000, val_accuracy=0.40, num_classes=4) is None
    assert near_chance(step=300, total=2000, val_accuracy=0.10, num_classes=10) is None  # early
    assert near_chance(step=600, total=5000, val_accuracy=0.10, num_classes=10) is None  # < 1/5
    assert near_chance(step=1000, total=5000, val_accuracy=0.14, num_classes=10) is not None
    calls: list[tuple[int, int, float, int]] = []

    def always(step: int, total: int, acc: float, classes: int) -> str:
        calls.append((step, total, acc, classes))
        return "not learning"

    monkeypatch.setattr("training.trainer.near_chance", always)
    with caplog.at_level(logging.WARNING, logger="training"):
        cfg = tiny_config("px_weight=0", "validate_every=2")
        Trainer(cfg, name="ce", store=ModelStore(tmp_path), progress=False).fit()
    assert len(calls) >= 2  # every validation asks; the warning is given once
    assert [r.getMessage() for r in caplog.records].count("not learning") == 1
    assert calls[0][3] == 10
