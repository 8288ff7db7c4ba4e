"""Timed training runs through `training.Trainer` on the check's device."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from model_store import ModelStore
from training import Trainer, apply_overrides, preset

__all__ = ["train_digits", "train_wrn"]


class _MarkedTrainer(Trainer):
    """Reads the clock (after a device sync) when given steps begin; nothing else changes."""

    mark_steps: frozenset[int]
    marks: dict[int, float]

    def _loss(self) -> Any:
        if self.step in self.mark_steps and self.step not in self.marks:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.marks[self.step] = time.perf_counter()
        return super()._loss()


def _trained(trainer: Trainer, started: float) -> dict[str, Any]:
    result = trainer.fit()
    cuda = trainer.cuda
    return {
        "ref": str(result.ref),
        "iterations": result.steps,
        "loop_s": round(result.duration_s, 2),
        "wall_s": round(time.perf_counter() - started, 2),
        "val_accuracy": round(result.metrics["val_accuracy"], 4),
        "rollbacks": len(result.rollbacks),
        "data_on_device": bool(cuda and cuda.resident),
        "sgld_cuda_graph": bool(cuda and cuda.graphed),
    }


def train_digits(store: ModelStore, device: str, overrides: tuple[str, ...]) -> dict[str, Any]:
    """The digits-jem preset on `device`; `loop_s` is Trainer.fit's own clock."""
    config = apply_overrides(preset("digits-jem"), [f"device={device}", *overrides])
    started = time.perf_counter()
    trainer = Trainer(config, name="gpucheck-digits", store=store, progress=False)
    out = _trained(trainer, started)
    print(f"  digits-jem: {out['loop_s']} s, validation accuracy {out['val_accuracy']}", flush=True)
    return {"preset": "digits-jem", "overrides": list(overrides), **out}


def train_wrn(
    store: ModelStore,
    data_root: Path,
    device: str,
    preset_name: str,
    iterations: int,
    warmup: int,
    overrides: tuple[str, ...],
) -> dict[str, Any]:
    """`preset_name` for `iterations`; seconds per iteration over those after `warmup`."""
    config = apply_overrides(
        preset(preset_name),
        [
            f"device={device}",
            f"data_root={data_root}",
            f"iterations={iterations}",
            "epochs=0",
            f"validate_every={iterations}",
            f"checkpoint_every={iterations + 1}",
            *overrides,
        ],
    )
    started = time.perf_counter()
    name = "gpucheck-" + preset_name.replace("+", "p")
    trainer = _MarkedTrainer(config, name=name, store=store, progress=False)
    last = iterations - 1
    trainer.mark_steps, trainer.marks = frozenset({warmup, last}), {}
    out = _trained(trainer, started)
    timed = last - warmup
    per_iter = (trainer.marks[last] - trainer.marks[warmup]) / timed if timed > 0 else None
    out["seconds_per_iteration"] = round(per_iter, 5) if per_iter is not None else None
    out["timed_iterations"] = timed
    print(f"  {preset_name}: {per_iter} s/iteration over {timed} iterations", flush=True)
    return {"preset": preset_name, "sgld_steps": config.sgld_steps, **out}
