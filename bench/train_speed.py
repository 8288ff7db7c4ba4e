"""Training speed through `training.Trainer`: seconds per iteration by SGLD steps, and the
wall-clock time until the model first reaches a test accuracy.

The test split is read here only to time the run: it decides nothing (no early stopping, no
model selection; the run's own validation and guard are untouched). The clock excludes the
time spent evaluating.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from model_store import ModelStore
from training import (
    Dataset,
    LabeledImages,
    Trainer,
    TrainingDiverged,
    apply_overrides,
    preset,
)

__all__ = ["seconds_per_iteration", "time_to_accuracy"]


class _Stop(Exception):  # noqa: N818 (control flow, not an error)
    """Ends a timed run early: the target was reached, or the time cap."""


class _TimedTrainer(Trainer):
    """Each time the loop validates, also reads test accuracy, off the clock."""

    target: float
    cap_s: float
    started: float
    eval_s: float
    points: list[dict[str, float]]

    def accuracy(self, split: LabeledImages, batch_size: int = 500) -> float:
        t0 = time.perf_counter()
        acc = super().accuracy(split, batch_size)
        if split is not self.data.val:
            self.eval_s += time.perf_counter() - t0
            return acc
        test_acc = super().accuracy(self.data.test, batch_size)
        self.eval_s += time.perf_counter() - t0
        train_s = time.perf_counter() - self.started - self.eval_s
        self.points.append(
            {"step": self.step, "train_s": round(train_s, 3), "test_accuracy": round(test_acc, 4)}
        )
        if test_acc >= self.target or train_s > self.cap_s:
            raise _Stop
        return acc


def _config(preset_name: str, threads: int, seed: int, overrides: list[str]) -> Any:
    base = [f"num_threads={threads}", f"seed={seed}", "sample_steps=1"]
    return apply_overrides(preset(preset_name), base + overrides)


def seconds_per_iteration(
    steps: list[int], iterations: int, *, threads: int, seed: int, data: Dataset, scratch: Path
) -> dict[str, Any]:
    """Seconds per iteration of the digits preset with `k` SGLD steps (0: the baseline)."""
    out: dict[str, Any] = {}
    store = ModelStore(scratch / "train-store")
    for k in steps:
        name = "digits-baseline" if k == 0 else "digits-jem"
        # every timed iteration a JEM one (the preset's px_start is past a short run's end)
        extra = [] if k == 0 else [f"sgld_steps={k}", "px_start=0", "px_warmup=0"]
        config = _config(
            name,
            threads,
            seed,
            [
                f"iterations={iterations}",
                f"validate_every={iterations}",
                f"checkpoint_every={iterations + 1}",
                *extra,
            ],
        )
        trainer = Trainer(config, name=f"bench-{k}", store=store, progress=False, data=data)
        result = trainer.fit()
        per_iter = result.duration_s / max(1, result.steps)
        out[str(k)] = {
            "preset": name,
            "sgld_steps": k,
            "iterations": result.steps,
            "seconds_per_iteration": round(per_iter, 5),
        }
        print(f"  training: {k:2d} SGLD steps: {per_iter * 1000:8.2f} ms/iteration", flush=True)
    base = out[str(steps[0])]["seconds_per_iteration"] if steps and steps[0] == 0 else None
    if base:
        for entry in out.values():
            entry["relative_to_baseline"] = round(entry["seconds_per_iteration"] / base, 2)
    return out


def time_to_accuracy(
    preset_name: str,
    *,
    target: float,
    every: int,
    cap_s: float,
    threads: int,
    seed: int,
    data: Dataset,
    scratch: Path,
) -> dict[str, Any]:
    """Train `preset_name` (its own schedule) until test accuracy first reaches `target`."""
    config = _config(preset_name, threads, seed, [f"validate_every={every}"])
    store = ModelStore(scratch / "train-store")
    trainer = _TimedTrainer(
        config, name=f"bench-tta-{preset_name}", store=store, progress=False, data=data
    )
    trainer.target, trainer.cap_s, trainer.eval_s, trainer.points = target, cap_s, 0.0, []
    logging.getLogger("training").setLevel(logging.WARNING)
    trainer.started = time.perf_counter()
    diverged = None
    try:
        trainer.fit()
    except _Stop:
        pass
    except TrainingDiverged as exc:
        diverged = str(exc)
    reached = [p for p in trainer.points if p["test_accuracy"] >= target]
    first = reached[0] if reached else None
    result = {
        "preset": preset_name,
        "target": target,
        "evaluated_every": every,
        "cap_s": cap_s,
        "reached": first is not None,
        "iterations_run": int(trainer.points[-1]["step"]) if trainer.points else 0,
        "best_test_accuracy": max((p["test_accuracy"] for p in trainer.points), default=None),
        "seconds": first["train_s"] if first else None,
        "iterations": int(first["step"]) if first else None,
        "curve": trainer.points,
        "diverged": diverged,
    }
    where = f"{first['train_s']:.1f} s ({int(first['step'])} it)" if first else "not reached"
    print(f"  training: {preset_name} to {target:.0%} test accuracy: {where}", flush=True)
    return result
