"""Recovering from a divergence the guard caught (:mod:`training.guard`) in a running
:class:`~training.trainer.Trainer`.

The last good state (step, weights and their moving average, optimiser, replay buffer) is kept in
memory at every validation; on a trip the run goes back to it, reseeds its generators (the same
noise would walk the chains into the same trouble again) and scales the learning rate by
``guard_lr_factor``, up to ``guard_retries`` times before it raises
:class:`~training.guard.TrainingDiverged`.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from training.batches import derive_seed
from training.guard import TrainingDiverged, Trip

if TYPE_CHECKING:
    from training.trainer import Trainer

__all__ = ["restore_snapshot", "roll_back", "snapshot"]

log = logging.getLogger("training")


def snapshot(trainer: Trainer) -> dict[str, Any]:
    """The last good state, in memory, for the guard to roll back to."""
    return {
        "step": trainer.step,
        "model": copy.deepcopy(trainer.model.state_dict()),
        "optimizer": copy.deepcopy(trainer.optimizer.state_dict()),
        "buffer": trainer.buffer.state_dict(),
        "ema": trainer.ema.state() if trainer.ema is not None else None,
    }


def restore_snapshot(trainer: Trainer, snap: dict[str, Any]) -> None:
    trainer.step = int(snap["step"])
    trainer.model.load_state_dict(snap["model"])
    trainer.optimizer.load_state_dict(copy.deepcopy(snap["optimizer"]))
    trainer.buffer.load_state_dict(snap["buffer"])
    if trainer.ema is not None:
        trainer.ema.load(snap["ema"]["weights"], snap["ema"]["updates"])


def roll_back(trainer: Trainer, trip: Trip, bar: tqdm[Any]) -> None:
    trainer.trips.append(trip)
    cfg = trainer.config
    if len(trainer.trips) > cfg.guard_retries:
        log.error("divergence at step %d (%s); giving up", trip.step, trip.reason)
        raise TrainingDiverged(trainer.trips, cfg.guard_retries)
    restore_snapshot(trainer, trainer.good)
    trainer.lr_scale *= cfg.guard_lr_factor
    attempt = len(trainer.trips)
    # a new seed: the same noise would walk the chains into the same trouble again
    trainer.gen.manual_seed(derive_seed(cfg.seed, trainer.info.rank, attempt, 0))
    trainer.buffer_gen.manual_seed(derive_seed(cfg.seed, trainer.info.rank, attempt, 1))
    if trainer.cuda is not None:
        trainer.cuda.reseed(attempt)
    message = (
        f"rollback {attempt}/{cfg.guard_retries}: {trip.reason} at step {trip.step}; "
        f"back to step {trainer.step}, reseeded, lr x{trainer.lr_scale:g}"
    )
    log.warning(message)
    if trainer.progress and trainer.info.is_main:
        bar.write(message)
    bar.reset(total=trainer.total)
    bar.update(trainer.step)
