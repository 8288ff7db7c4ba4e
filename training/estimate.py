"""Before a run starts: how long one iteration takes here, and so the whole run.

A few iterations are timed on throwaway copies of the network and its optimiser, with chains
from the init distribution and a generator of their own: the run itself (weights, buffer, every
random stream) is exactly what it would have been without the measurement, so exact resume
still holds. The first timed iteration is a warm-up (allocation, kernel selection) and is not
counted; then at least ``estimate_iters`` are timed, and more until they add up to
``MIN_TIMED_S`` (at most ``MAX_TIMED``), so a cheap iteration is timed many times and one slow
outlier (another process taking the core) moves the median little; the estimate is their median,
printed with their range. A JEM run's iterations before ``px_start`` are
cross-entropy only (no SGLD: a few times cheaper), so those are timed apart and counted at their
own cost. Validation, health checks and saving are not counted.
"""

from __future__ import annotations

import copy
import logging
import os
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

__all__ = ["MAX_TIMED", "MIN_TIMED_S", "WARN_AFTER_S", "Estimate", "estimate_run"]

log = logging.getLogger("training")

WARN_AFTER_S = 30 * 60.0  # a run estimated longer than this gets a warning, and what to try
MIN_TIMED_S = 1.0  # iterations are timed until they add up to this much (of each kind)...
MAX_TIMED = 30  # ...or this many were timed


@dataclass(frozen=True)
class Estimate:
    """Seconds per iteration (after ``px_start``, or every iteration of a run without the
    generative term) and, apart, per iteration before ``px_start`` (cross-entropy only)."""

    seconds_per_iteration: float
    iterations: int  # still to run, ``before_px_start`` of them included
    timed: int  # iterations timed (after one warm-up), of each kind
    device: str
    threads: int
    cheaper: tuple[str, ...] = ()  # settings that would cut the cost, given the config
    before_px_start: int = 0  # of ``iterations``: cross-entropy only, no SGLD
    seconds_before_px_start: float = 0.0  # per such iteration
    load: tuple[float, int] | None = None  # (1-minute load average, CPU cores) when timed
    spread: tuple[float, float] | None = None  # fastest and slowest timed iteration
    timed_before: int = 0  # cross-entropy-only iterations timed (when before_px_start)
    spread_before: tuple[float, float] | None = None

    @property
    def busy(self) -> str:
        """What the load says about the timing: empty unless more were runnable than cores."""
        if self.load is None or self.load[0] <= self.load[1]:
            return ""
        return (
            f" (load average {self.load[0]:.1f} on {self.load[1]} cores: other processes "
            "shared the CPU, so a quiet machine is faster)"
        )

    @property
    def total_s(self) -> float:
        after = self.iterations - self.before_px_start
        return (
            self.seconds_per_iteration * after + self.seconds_before_px_start * self.before_px_start
        )

    def describe(self) -> str:
        threads = f"{self.threads} thread" + ("s" if self.threads != 1 else "")
        where = f"on {self.device}, {threads}"
        jem = f"{self.seconds_per_iteration:.3g} s {_timed(self.timed, self.spread)}"
        if self.before_px_start == 0:
            return (
                f"estimate: {self.seconds_per_iteration:.3g} s/iteration "
                f"{_timed(self.timed, self.spread)} {where} x {self.iterations} iterations "
                f"= about {_duration(self.total_s)}{self.busy}"
            )
        after = self.iterations - self.before_px_start
        before = (
            f"{self.seconds_before_px_start:.3g} s {_timed(self.timed_before, self.spread_before)}"
        )
        return (
            f"estimate: {self.before_px_start} iterations before px_start (cross-entropy only) x "
            f"{before} + {after} x {jem} {where} = about {_duration(self.total_s)}{self.busy}"
        )

    def warning(self) -> str | None:
        if self.total_s <= WARN_AFTER_S:
            return None
        return (
            f"this run will take about {_duration(self.total_s)}. Cheaper: "
            + "; ".join(self.cheaper)
            + " (docs/training.md, 'Backbones', lists what each costs per iteration)"
        )


def _timed(n: int, spread: tuple[float, float] | None) -> str:
    """How a per-iteration figure was measured: "(median of 12 timed, 0.18-0.21 s)"."""
    if spread is None or n < 2:
        return f"({n} timed)"
    return f"(median of {n} timed, {spread[0]:.3g}-{spread[1]:.3g} s)"


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
    """Time one warm-up and then at least ``timed`` iterations of ``trainer``'s configuration on
    copies, more until ``MIN_TIMED_S`` (and as many cross-entropy-only ones when iterations
    before ``px_start`` remain); see the module.
    ``clock``: wall time by default; ``time.process_time`` gives CPU time (benchmarks)."""
    cfg = trainer.config
    iterations = max(0, trainer.total - trainer.step)
    generative = cfg.px_weight > 0
    before = max(0, min(trainer.total, cfg.px_start) - trainer.step) if generative else 0
    timing = _Timing(trainer, clock)
    times = timing.sample(generative, timed)
    times_before = timing.sample(False, timed) if before else []
    return Estimate(
        seconds_per_iteration=statistics.median(times),
        iterations=iterations,
        timed=len(times),
        device=str(trainer.device),
        threads=torch.get_num_threads(),
        cheaper=_cheaper(trainer),
        before_px_start=before,
        seconds_before_px_start=statistics.median(times_before) if times_before else 0.0,
        timed_before=len(times_before),
        spread_before=(min(times_before), max(times_before)) if times_before else None,
        load=(os.getloadavg()[0], os.cpu_count() or 1) if hasattr(os, "getloadavg") else None,
        spread=(min(times), max(times)),
    )


class _Timing:
    """Throwaway copies of the network and optimiser, a generator of their own, one batch as
    step 0 draws it: iterations timed on these leave the run untouched."""

    def __init__(self, trainer: Trainer, clock: Callable[[], float]) -> None:
        cfg, self.trainer, self.clock = trainer.config, trainer, clock
        self.model = copy.deepcopy(trainer.model)
        self.optimizer = build_optimizer(cfg, self.model)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        train = trainer.data.train
        index = batch_indices(cfg.seed, 0, len(train), cfg.batch_size, 0, 1)  # as step 0 draws
        self.x = train.inputs(index).to(trainer.device)
        self.y = train.labels[index].to(trainer.device)

    def sample(self, generative: bool, timed: int) -> list[float]:
        """Seconds of each iteration timed after one warm-up: at least ``timed`` of them, more
        until they add up to ``MIN_TIMED_S``, at most ``MAX_TIMED`` (or ``timed`` if larger)."""
        self.iteration(generative)  # warm-up, not counted
        times: list[float] = []
        least = max(1, timed)
        while len(times) < least or (sum(times) < MIN_TIMED_S and len(times) < MAX_TIMED):
            times.append(self.iteration(generative))
        return times

    def iteration(self, generative: bool) -> float:
        trainer, cfg, model, x = self.trainer, self.trainer.config, self.model, self.x
        start = self.clock()
        x_sampled = None
        if generative:
            n_chains = cfg.sgld_batch_size or cfg.batch_size
            x0 = trainer.init.sample(n_chains, trainer.data.spec.shape, None, self.generator)
            with trainer.autocast():
                x_sampled = sgld_sample(
                    model, x0.to(trainer.device), trainer.sgld, generator=self.generator
                )
        model.train()
        x_data = x.clone().requires_grad_(cfg.grad_penalty > 0)
        with trainer.autocast():
            logits_all = model(x_data if x_sampled is None else torch.cat([x_data, x_sampled]))
        parts = jem_loss(
            logits_all[: len(x)],
            self.y,
            logits_all[len(x) :] if x_sampled is not None else None,
            x_sampled,
            px_weight=cfg.px_weight,
            energy_reg=cfg.energy_reg,
            x_data=x_data,
            grad_penalty=cfg.grad_penalty,
            label_smoothing=cfg.label_smoothing,
        )
        self.optimizer.zero_grad(set_to_none=True)
        parts.loss.backward()
        self.optimizer.step()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        return self.clock() - start
