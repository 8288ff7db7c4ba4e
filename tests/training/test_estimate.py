"""The run-time estimate counts a JEM run's iterations before ``px_start`` at their own cost."""

from __future__ import annotations

from pathlib import Path

from model_store import ModelStore
from tests.training._tiny import tiny_config
from training.estimate import MAX_TIMED, MIN_TIMED_S, Estimate, estimate_run
from training.trainer import Trainer


def test_iterations_before_px_start_are_timed_without_sgld(
    tmp_path: Path, one_thread: None
) -> None:
    # 20 SGLD steps: a JEM iteration is ~20 forward/backward passes, a cross-entropy one ~1
    config = tiny_config("iterations=10", "px_start=6", "sgld_steps=20")
    trainer = Trainer(config, name="t", store=ModelStore(tmp_path), progress=False)
    estimate = estimate_run(trainer, 2)
    assert (estimate.iterations, estimate.before_px_start) == (10, 6)
    assert 0 < estimate.seconds_before_px_start < estimate.seconds_per_iteration / 2
    expected = 6 * estimate.seconds_before_px_start + 4 * estimate.seconds_per_iteration
    assert abs(estimate.total_s - expected) < 1e-12
    assert estimate.total_s < 10 * estimate.seconds_per_iteration
    assert "6 iterations before px_start (cross-entropy only) x" in estimate.describe()
    trainer.step = 7  # resumed past px_start: every remaining iteration is a JEM one
    assert estimate_run(trainer, 1).before_px_start == 0


def test_a_run_without_the_generative_term_has_one_kind_of_iteration(
    tmp_path: Path, one_thread: None
) -> None:
    config = tiny_config("iterations=10", "px_start=6", "px_weight=0")
    trainer = Trainer(config, name="t", store=ModelStore(tmp_path), progress=False)
    estimate = estimate_run(trainer, 1)
    assert (estimate.iterations, estimate.before_px_start) == (10, 0)
    assert estimate.total_s == 10 * estimate.seconds_per_iteration


def test_the_described_total_adds_both_kinds() -> None:
    estimate = Estimate(
        0.3, 300, 3, "cpu", 1, before_px_start=100, seconds_before_px_start=0.1,
        spread=(0.28, 0.41), timed_before=10, spread_before=(0.09, 0.12),
    )  # fmt: skip
    assert estimate.describe() == (
        "estimate: 100 iterations before px_start (cross-entropy only) x 0.1 s (median of 10 "
        "timed, 0.09-0.12 s) + 200 x 0.3 s (median of 3 timed, 0.28-0.41 s) on cpu, 1 thread "
        "= about 70 s"
    )


def test_cheap_iterations_are_timed_until_they_add_up(tmp_path: Path, one_thread: None) -> None:
    """At least `timed` iterations, more until MIN_TIMED_S (at most MAX_TIMED): a tiny model's
    iterations take milliseconds, so many are timed and one outlier moves the median little."""
    config = tiny_config("iterations=10", "px_weight=0")
    trainer = Trainer(config, name="t", store=ModelStore(tmp_path), progress=False)
    estimate = estimate_run(trainer, 2)
    assert estimate.spread is not None
    low, high = estimate.spread
    assert low <= estimate.seconds_per_iteration <= high
    assert 2 <= estimate.timed <= MAX_TIMED
    assert estimate.timed == MAX_TIMED or estimate.timed * high >= MIN_TIMED_S
    low_s, high_s = f"{low:.3g}", f"{high:.3g}"
    assert f"(median of {estimate.timed} timed, {low_s}-{high_s} s)" in estimate.describe()


def test_a_busy_machine_is_named_beside_the_timing() -> None:
    # the same run timed at load 14 on 2 cores reads several times slower than on a quiet one
    busy = Estimate(10.1, 2000, 2, "cpu", 2, load=(14.0, 2))
    assert "load average 14.0 on 2 cores: other processes shared the CPU" in busy.describe()
    quiet = Estimate(0.15, 2000, 2, "cpu", 2, load=(0.7, 2))
    assert "load average" not in quiet.describe()
