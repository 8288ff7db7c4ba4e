"""What a checkpoint holds of a running :class:`~training.trainer.Trainer`, and putting it back.

Saved: the optimiser, every generator the loop draws from (the run's two, torch's global one,
numpy's, python's), the live weights when the version's are their moving average (``ema_decay``,
:mod:`training.ema`) and its update count, the best validation's weights and figures when the run
ships those (``load_best_model_at_end``, :mod:`training.best`), the step, the guard's
learning-rate scale and history, and the time spent so far. The learning-rate schedule needs
nothing else: it is a pure function of the step and that scale. Weights and the replay buffer
travel as the version's own weights/buffer files.

The resumed run's config (the checkpoint's, with any ``--set`` overrides) decides the replay
buffer: chains the checkpoint never advanced (a baseline's, or a JEM's before ``px_start``) are
not kept but built as a fresh run builds them (``buffer_init``, ``buffer_size``), so a baseline
resumed at ``px_start`` with other buffer settings is those settings' JEM run; advanced chains are
kept, and their restarts come from the resumed config's init.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from model_store import ModelRef
from training.batches import derive_seed
from training.build import build_buffer
from training.checkpoint import load_training_state
from training.ema import live_tensors, live_weights
from training.guard import Trip
from training.state import (
    TrainingState,
    optimizer_from_flat,
    optimizer_to_flat,
    rng_from_flat,
    rng_to_flat,
)

if TYPE_CHECKING:
    from training.trainer import Trainer

__all__ = ["capture_state", "restore_state"]

log = logging.getLogger("training")


def capture_state(t: Trainer, elapsed: float) -> TrainingState:
    opt_tensors, opt_meta = optimizer_to_flat(t.optimizer)
    rng_tensors, rng_meta = rng_to_flat({"main": t.gen, "buffer": t.buffer_gen})
    # with a moving average the version's weights are the average's: the live ones go here
    live = live_tensors(t.model) if t.ema is not None else {}
    best = t.best.tensors() if t.best is not None else {}
    meta = {
        "step": t.step,
        "lr_scale": t.lr_scale,
        "run_id": t.run_id,
        "trips": [trip.to_dict() for trip in t.trips],
        "best_val_acc": t.guard.best_val_acc,
        "elapsed_s": t.elapsed_before + elapsed,
        "ema_updates": t.ema.updates if t.ema is not None else 0,
        "best": t.best.meta() if t.best is not None else None,
        "optimizer": opt_meta,
        "rng": rng_meta,
    }
    return TrainingState({**opt_tensors, **rng_tensors, **live, **best}, meta)


def restore_state(t: Trainer, ref: str) -> ModelRef:
    """Load checkpoint ``ref`` into ``t``: weights, optimiser, buffer, generators, step."""
    mref, saved, meta, tensors, weights = load_training_state(t.store, ref)
    live = live_weights(tensors)  # present when the checkpoint's weights are a moving average
    t.model.load_state_dict(live or weights)
    if t.ema is not None:
        if live:  # both continue
            t.ema.load(weights, int(meta.get("ema_updates", 1)))
        else:  # a checkpoint without one: the average starts at the resumed weights
            t.ema.restart_from(t.model)
    optimizer_from_flat(t.optimizer, tensors, meta["optimizer"])
    rng_from_flat({"main": t.gen, "buffer": t.buffer_gen}, tensors, meta["rng"])
    if t.info.rank > 0:  # rank 0's generators were saved; the other ranks derive their own
        t.gen.manual_seed(derive_seed(t.config.seed, t.info.rank, meta["step"], 0))
        t.buffer_gen.manual_seed(derive_seed(t.config.seed, t.info.rank, meta["step"], 1))
    if saved.px_weight > 0 and int(meta["step"]) > saved.px_start:
        t.buffer.load_state_dict(t.store.read_tensors(mref, "buffer"))
        _restart_from_config(t)
    else:  # never advanced: the buffer a fresh run builds (Trainer.__init__'s buffer stream)
        t.buffer_gen.manual_seed(derive_seed(t.config.seed, t.info.rank, 0, 1))
        t.buffer, t.init = build_buffer(t.config, t.data, t.buffer_gen)
    if t.cuda is not None:  # device streams are not saved: derived from the resumed step
        t.cuda.reseed(int(meta["step"]))
    t.step = int(meta["step"])
    t.lr_scale = float(meta["lr_scale"])
    t.run_id = str(meta["run_id"])
    t.trips = [Trip(int(x["step"]), str(x["reason"])) for x in meta["trips"]]
    t.guard.best_val_acc = float(meta["best_val_acc"])
    t.elapsed_before = float(meta["elapsed_s"])
    if t.best is not None:  # without a copy in the checkpoint the choice starts from here
        t.best.restore(tensors, meta.get("best"))
    log.info("resumed %s at step %d of %d", mref, t.step, t.total)
    return mref


def _restart_from_config(t: Trainer) -> None:
    """Restart kept chains from the resumed config's init (``t.init``), not the checkpoint's."""
    t.buffer.reinit_freq = t.config.reinit_freq
    old, new = t.buffer.init.state_dict(), t.init.state_dict()
    if old.keys() != new.keys() or not all(torch.equal(old[k], new[k]) for k in old):
        log.info("buffer init is now %s: restarts come from it", t.config.buffer_init)
        t.buffer.init = t.init
