"""`python -m bench.backbones`: the backbone family at an input size: parameters, forward
FLOPs per image, and the CPU seconds of one JEM training iteration (docs/training.md).
Colour images, 32x32 unless ``--image-size`` says otherwise (docs/your-data.md times 16x16).

An iteration is timed through `training.estimate.estimate_run` (the estimate printed before
every run) on a synthetic data set of the given shape, in CPU time of one thread: on a shared
machine that is what a quiet machine's wall clock would show, where wall time is not.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from model_store import ModelStore
from training import TrainConfig, Trainer
from training.data import RGB32_SPEC, Dataset, LabeledImages
from training.estimate import estimate_run

__all__ = ["CANDIDATES", "measure"]

CANDIDATES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("digits_cnn", {"width": 32}),
    ("digits_cnn", {"width": 64}),
    ("wrn", {"depth": 10, "widen_factor": 2}),
    ("wrn", {"depth": 16, "widen_factor": 4}),
    ("wrn", {"depth": 28, "widen_factor": 10}),
)


def _dataset(classes: int, n: int, seed: int, size: int = 32) -> Dataset:
    rng = np.random.default_rng(seed)
    spec = RGB32_SPEC if size == 32 else replace(RGB32_SPEC, height=size, width=size)
    images = torch.from_numpy(rng.integers(0, 256, (n, spec.height, spec.width, 3), np.uint8))
    labels = torch.arange(n) % classes
    part = LabeledImages(images, labels, spec)
    return Dataset("synthetic", part, part, part, [str(k) for k in range(classes)], spec)


def measure(
    sgld_steps: tuple[int, ...], classes: int, timed: int, time_up_to: int, image_size: int = 32
) -> list[Any]:
    torch.set_num_threads(1)
    data = _dataset(classes, 256, 0, image_size)
    rows = []
    for name, kwargs in CANDIDATES:
        row: dict[str, Any] = {"backbone": name, "kwargs": kwargs}
        for steps in sgld_steps:
            config = TrainConfig(
                dataset="synthetic",
                image_size=(image_size, image_size),
                backbone=name,
                backbone_kwargs=kwargs,
                sgld_steps=steps,
                buffer_size=256,
                num_threads=1,
                estimate_iters=0,
            )
            trainer = Trainer(config, name="x", store=ModelStore("/nonexistent"), data=data)
            if steps == sgld_steps[0]:
                model = trainer.model
                row["parameters"] = sum(p.numel() for p in model.parameters())
                with FlopCounterMode(display=False) as flops:
                    model(torch.zeros(1, *data.spec.shape))
                row["gflops_forward"] = round(flops.get_total_flops() / 1e9, 4)
            if row["parameters"] <= time_up_to:
                estimate = estimate_run(trainer, timed, clock=time.process_time)
                row[f"cpu_s_per_iteration_sgld{steps}"] = round(estimate.seconds_per_iteration, 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.backbones", description=__doc__)
    p.add_argument("--sgld-steps", type=int, nargs="+", default=[20, 5])
    p.add_argument("--classes", type=int, default=6)
    p.add_argument("--timed", type=int, default=2, help="timed iterations after one warm-up")
    p.add_argument(
        "--time-up-to", type=int, default=5_000_000, help="time only backbones this small"
    )
    p.add_argument("--image-size", type=int, default=32, help="height and width of the images")
    args = p.parse_args()
    measure(tuple(args.sgld_steps), args.classes, args.timed, args.time_up_to, args.image_size)


if __name__ == "__main__":
    main()
