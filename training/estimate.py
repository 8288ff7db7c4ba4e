"""Before a run starts: how long one iteration takes here, and so the whole run.

A few iterations are timed on throwaway copies of the network and its optimiser, with chains
from the init distribution and a generator of their own: the run itself (weights, buffer, every
random stream) is exactly what it would have been without the measurement, so exact resume
still holds. The first timed iteration is a warm-up (allocation, kernel selection) and is not
counted; the estimate is the median of the rest.
"""

from __future__ import annotations

import copy
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from jem import sgld_sample
from training.batches import batch_indices
from training.build import build_optimizer
from training.objective import jem_loss

if TYPE_CHECKING:
    from training.trainer import Trainer

__all__ = ["WARN_AFTER_S", "Estimate", "estimate_run"]

log = logging.getLogger("training")

WARN_AFTER_S = 30 * 60.0  # a run estimated longer than this gets a warning, and what to try


@dataclass(frozen=True)
class Estimate:
    seconds_per_iteration: float
    iterations: int  # still to run
    timed: int  # iterations timed (after one warm-up)
    device: str
    threads: int
    cheaper: tuple[str, ...] = ()  # settings that would cut the cost, given the config

    @property
    def total_s(self) -> float:
        return self.seconds_per_iteration * self.iterations

    def describe(self) -> str:
        return (
            f"estimate: {self.seconds_per_iteration:.3g} s/iteration (median of {self.timed} "
            f"timed iterations on {self.device}, {self.threads} threads) x {self.iterations} "
            f"iterations = about {_duration(self.total_s)}"
        )

    def warning(self) -> str | None:
        if self.total_s <= WARN_AFTER_S:
            return None
        return (
            f"this run will take about {_duration(self.total_s)}. Cheaper: "
            + "; ".join(self.cheaper)
            + " (docs/training.md, 'Backbones', lists what each costs per iteration)"
        )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


_FROM_DATA = ("in_channels", "num_classes", "image_size")  # set from the data, not chosen


def _cheaper(trainer: Trainer) -> tuple[str, ...]:
    cfg, spec = trainer.config, trainer.data.spec
    out = [f"fewer iterations (now {trainer.total})"]
    if cfg.px_weight > 0 and cfg.sgld_steps > 5:
        hint = " with buffer_init=gaussian (JEM++)" if cfg.buffer_init != "gaussian" else ""
        out.append(f"sgld_steps=5{hint} (now {cfg.sgld_steps}: SGLD is most of an iteration)")
    if max(spec.height, spec.width) > 16 and trainer.data.name == "folder":
        out.append(f"a smaller image_size (now {spec.height},{spec.width})")
    name, kwargs = trainer.backbone
    settings = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k not in _FROM_DATA)
    out.append(f"a smaller backbone (now {name}({settings}))")
    if trainer.device.type == "cpu":
        out.append("a GPU (device=cuda)")
    return tuple(out)


def estimate_run(
    trainer: Trainer, timed: int = 2, clock: Callable[[], float] = time.perf_counter
) -> Estimate:
    """Time ``1 + timed`` iterations of ``trainer``'s configuration on copies; see the module.
    ``clock``: wall time by default; ``time.process_time`` gives CPU time (benchmarks)."""
    cfg, device = trainer.config, trainer.device
    model = copy.deepcopy(trainer.model)
    optimizer = build_optimizer(cfg, model)
    generator = torch.Generator().manual_seed(cfg.seed)
    train = trainer.data.train
    index = batch_indices(cfg.seed, 0, len(train), cfg.batch_size, 0, 1)  # as step 0 draws
    x, y = train.inputs(index).to(device), train.labels[index].to(device)
    generative = cfg.px_weight > 0
    n_chains = cfg.sgld_batch_size or cfg.batch_size
    times = []
    for _ in range(1 + max(1, timed)):
        start = clock()
        x_sampled = None
        if generative:
            x0 = trainer.init.sample(n_chains, trainer.data.spec.shape, None, generator)
            with trainer.autocast():
                x_sampled = sgld_sample(model, x0.to(device), trainer.sgld, generator=generator)
        model.train()
        x_data = x.clone().requires_grad_(cfg.grad_penalty > 0)
        with trainer.autocast():
            logits_all = model(x_data if x_sampled is None else torch.cat([x_data, x_sampled]))
        parts = jem_loss(
            logits_all[: len(x)],
            y,
            logits_all[len(x) :] if x_sampled is not None else None,
            x_sampled,
            px_weight=cfg.px_weight,
            energy_reg=cfg.energy_reg,
            x_data=x_data,
            grad_penalty=cfg.grad_penalty,
        )
        optimizer.zero_grad(set_to_none=True)
        parts.loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(clock() - start)
    return Estimate(
        seconds_per_iteration=statistics.median(times[1:]),
        iterations=max(0, trainer.total - trainer.step),
        timed=len(times) - 1,
        device=str(device),
        threads=torch.get_num_threads(),
        cheaper=_cheaper(trainer),
    )
