"""What a running :class:`~training.trainer.Trainer` writes to the model store.

Its training record (the manifest's ``training``: run id, command, step, duration, split, rollbacks,
health, device), a checkpoint every ``checkpoint_every`` steps (with the state to resume from), and
the final version (with class-conditional samples drawn from uniform noise, samples.png). Called on
rank 0 only; the trainer holds the barrier. Manifests, saving and pruning are
:mod:`training.checkpoint`'s.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from jem import UniformInit
from model_store import ModelRef
from training.build import compact_buffer, sgld_config
from training.checkpoint import manifest_draft, prune_checkpoints, save_version
from training.resume import capture_state
from training.samples import class_conditional_samples, class_grid_png

if TYPE_CHECKING:
    from training.trainer import Trainer

__all__ = ["save_checkpoint", "save_final", "training_info"]

log = logging.getLogger("training")


def training_info(trainer: Trainer, elapsed: float) -> dict[str, Any]:
    return {
        "run_id": trainer.run_id,
        "command": trainer.command,
        "step": trainer.step,
        "iterations": trainer.total,
        "duration_s": round(trainer.elapsed_before + elapsed, 2),
        "split": trainer.data.split,
        "dataset": trainer.data.name,
        "rollbacks": [t.to_dict() for t in trainer.trips],
        "health": trainer.health.summary() if trainer.health is not None else None,
        # the weights saved: the moving average (config ema_decay) or the last iterate
        "weights": "ema" if trainer.ema is not None else "last",
        # load_best_model_at_end: the step the weights come from, and every candidate's figure
        "selection": trainer.best.record(trainer.step) if trainer.best is not None else None,
        "device": str(trainer.device),
        "world_size": trainer.info.world_size,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
    }


def save_checkpoint(trainer: Trainer, elapsed: float) -> ModelRef:
    draft = manifest_draft(
        stage="checkpoint",
        config=trainer.config,
        data=trainer.data,
        backbone=trainer.backbone,
        training=training_info(trainer, elapsed),
    )
    ref = save_version(
        trainer.store,
        trainer.name,
        trainer.shipped,
        draft,
        buffer=trainer.buffer.state_dict(),
        state=capture_state(trainer, elapsed),
    )
    log.info("checkpoint %s at step %d", ref, trainer.step)
    prune_checkpoints(trainer.store, trainer.name, trainer.run_id, trainer.config.keep_checkpoints)
    return ref


def save_final(trainer: Trainer, elapsed: float, metrics: dict[str, float]) -> ModelRef:
    cfg = trainer.config
    sampler = sgld_config(cfg, trainer.data.spec.value_range, cfg.sample_steps)
    # from uniform noise, as evaluation and the service generate: the hard case
    noise = UniformInit(*trainer.data.spec.value_range)
    x, y = class_conditional_samples(
        trainer.shipped, noise, trainer.data.spec.shape, sampler, 10, cfg.seed, trainer.device
    )
    draft = manifest_draft(
        stage="final",
        config=cfg,
        data=trainer.data,
        backbone=trainer.backbone,
        training=training_info(trainer, elapsed),
        metrics=dict(metrics),
    )
    ref = save_version(
        trainer.store,
        trainer.name,
        trainer.shipped,
        draft,
        buffer=compact_buffer(trainer.buffer.state_dict()) if cfg.px_weight > 0 else None,
        files={"samples.png": class_grid_png(x, y, trainer.data.class_names)},
    )
    prune_checkpoints(trainer.store, trainer.name, trainer.run_id, cfg.keep_checkpoints_final)
    return ref
