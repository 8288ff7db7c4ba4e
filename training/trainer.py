"""The training loop: orchestrates data, model, SGLD, objective, guard and checkpoints.

Like minGPT's trainer, nothing in here knows what a JEM is beyond "it has logits and energies";
the math lives in ``jem`` and :mod:`training.objective`. Randomness comes from two generators per
rank (``main``: data noise, augmentation, SGLD noise; ``buffer``: chain draws and restarts) and
the batch order is a function of (seed, step), so the state saved in a checkpoint is all it
takes to continue bit-exactly.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from jem import UniformInit, sgld_sample, use_fast_layout
from model_store import ModelRef, ModelStore
from training.accel import CudaPath
from training.batches import augment, batch_indices, derive_seed
from training.build import (
    build_buffer,
    build_model,
    build_optimizer,
    compact_buffer,
    lr_multiplier,
    resolve_backbone,
    sgld_config,
)
from training.checkpoint import manifest_draft, prune_checkpoints, save_version
from training.config import TrainConfig
from training.data import Dataset, FolderOptions, LabeledImages, load_dataset
from training.datasets.normalization import with_normalization
from training.datasets.rendered_digits import add_to_training_split
from training.distributed import DistInfo, all_agree, barrier, setup
from training.estimate import estimate_run
from training.guard import DivergenceGuard, TrainingDiverged, Trip
from training.health import HealthMonitor
from training.objective import LossParts, jem_loss
from training.resume import capture_state, restore_state
from training.samples import class_conditional_samples, class_grid_png

__all__ = ["TrainResult", "Trainer"]

log = logging.getLogger("training")


@dataclass
class TrainResult:
    ref: ModelRef | None  # None on ranks other than 0
    steps: int
    duration_s: float
    metrics: dict[str, float]
    rollbacks: list[Trip] = field(default_factory=list)


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        *,
        name: str,
        store: ModelStore | None = None,
        info: DistInfo | None = None,
        command: str = "",
        progress: bool = True,
        data: Dataset | None = None,
    ) -> None:
        self.config, self.name, self.command, self.progress = config, name, command, progress
        self.store = store or ModelStore()
        self.info = info or setup(config.device)
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        self.data = data or load_dataset(
            config.dataset,
            root=config.data_root,
            download=config.download,
            seed=config.split_seed,
            val_fraction=config.val_fraction,
            test_fraction=config.test_fraction,
            folder=FolderOptions.from_config(config.to_dict()),
        )
        self.device = self.info.device
        # the same initial weights on every rank (DDP broadcasts rank 0's anyway)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)
        random.seed(config.seed)
        self.backbone = resolve_backbone(config, self.data)
        self.model = use_fast_layout(build_model(config, self.data).to(self.device), self.device)
        self.optimizer = build_optimizer(config, self.model)
        if config.normalization and data is None:
            self.data = with_normalization(self.data, config.normalization)
        if config.extra_train and data is None:
            # once the network is known to build (rendering takes a while when not cached); it
            # draws from its own seeded generator, none of the global ones seeded above
            self.data = add_to_training_split(
                self.data,
                config.extra_train_per_class,
                config.extra_train_seed,
                real_repeat=config.extra_train_real_repeat,
            )
        self.total = config.total_iterations(len(self.data.train))
        self.lr_at = lr_multiplier(config, self.total)
        self.lr_scale = 1.0
        self.gen = torch.Generator().manual_seed(derive_seed(config.seed, self.info.rank, 0, 0))
        buffer_seed = derive_seed(config.seed, self.info.rank, 0, 1)
        self.buffer_gen = torch.Generator().manual_seed(buffer_seed)
        self.buffer, self.init = build_buffer(config, self.data, self.buffer_gen)
        self.sgld = sgld_config(config, self.data.spec.value_range, config.sgld_steps)
        self.cuda: CudaPath | None = None  # data, noise and SGLD on the GPU (training.accel)
        if self.device.type == "cuda":
            self.cuda = CudaPath(
                self.data.train,
                self.data.spec,
                self.device,
                seed=config.seed,
                rank=self.info.rank,
                use_graph=config.sgld_cuda_graph,
                autocast_dtype=torch.bfloat16 if config.amp in ("auto", "bf16") else None,
            )
        self.net: torch.nn.Module = self.model
        if self.info.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.step = 0
        self.guard = DivergenceGuard(
            config.guard_max_energy, config.guard_max_pixel, config.guard_collapse_drop
        )
        self.trips: list[Trip] = []
        self.run_id = uuid.uuid4().hex[:12]
        self.elapsed_before = 0.0
        self.good = self._snapshot()
        self.health: HealthMonitor | None = None
        if config.px_weight > 0 and self.info.is_main:
            train, val = self.data.train, self.data.val
            self.health = HealthMonitor(
                train.inputs(), train.labels, val.inputs(), self.data.spec.value_range
            )

    # ------------------------------------------------------------------ one step

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        amp = self.config.amp
        if self.device.type == "cuda" and amp in ("auto", "bf16"):
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _batch(self) -> tuple[Tensor, Tensor]:
        cfg, info = self.config, self.info
        idx = batch_indices(
            cfg.seed, self.step, len(self.data.train), cfg.batch_size, info.rank, info.world_size
        )
        if self.cuda is not None:
            return self.cuda.batch(idx, cfg.augment, cfg.data_noise, self.gen)
        x = augment(self.data.train.inputs(idx), cfg.augment, self.gen)
        if cfg.data_noise > 0:  # JEM adds a little noise to data: smooths the data density
            x = x + cfg.data_noise * torch.randn(x.shape, generator=self.gen)
        return x.to(self.device), self.data.train.labels[idx].to(self.device)

    def _loss(self) -> LossParts:
        cfg = self.config
        x, y = self._batch()
        x_sampled = None
        if cfg.px_weight > 0 and self.step >= cfg.px_start:
            # persistent chains: resume stored samples, run a few SGLD steps, store them back
            x0, slots = self.buffer.sample(cfg.sgld_batch_size or cfg.batch_size)
            if self.cuda is not None:
                x_sampled = self.cuda.sample(self.model, x0, self.sgld)
            else:
                with self._autocast():
                    x_sampled = sgld_sample(
                        self.model, x0.to(self.device), self.sgld, generator=self.gen
                    )
            self.buffer.update(slots, x_sampled)
        self.net.train()
        if cfg.grad_penalty > 0:
            x.requires_grad_(True)
        with self._autocast():
            # one forward over data and samples: one DDP all-reduce per step
            inputs = x if x_sampled is None else torch.cat([x, x_sampled])
            logits_all = self.net(inputs)
        logits, logits_sampled = logits_all[: len(x)], logits_all[len(x) :]
        if self.step == cfg.induce_divergence_at:  # test hook for the divergence guard
            logits = logits * float("nan")
        return jem_loss(
            logits,
            y,
            logits_sampled if x_sampled is not None else None,
            x_sampled,
            px_weight=cfg.px_weight,
            energy_reg=cfg.energy_reg,
            x_data=x,
            grad_penalty=cfg.grad_penalty,
        )

    @torch.no_grad()
    def accuracy(self, split: LabeledImages, batch_size: int = 500) -> float:
        self.model.eval()
        correct = 0
        for start in range(0, len(split), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(split)))
            logits = self.model(split.inputs(idx).to(self.device))
            correct += int((logits.argmax(1).cpu() == split.labels[idx]).sum())
        return correct / max(1, len(split))

    # ------------------------------------------------------------------ the loop

    def fit(self) -> TrainResult:
        cfg = self.config
        if cfg.estimate_iters > 0 and self.info.is_main and self.step < self.total:
            estimate = estimate_run(self, cfg.estimate_iters)
            log.info(estimate.describe())
            if (warning := estimate.warning()) is not None:
                log.warning(warning)
        started = time.monotonic()
        bar = tqdm(
            total=self.total,
            initial=self.step,
            disable=not (self.progress and self.info.is_main),
            dynamic_ncols=True,
            mininterval=1.0,
            desc=self.name,
        )
        with bar:
            while self.step < self.total:
                for group in self.optimizer.param_groups:
                    group["lr"] = cfg.lr * self.lr_at(self.step) * self.lr_scale
                parts = self._loss()
                trip = self.guard.check_step(self.step, parts)
                if all_agree(trip is not None, self.info):
                    self._rollback(trip or Trip(self.step, "another rank diverged"), bar)
                    continue
                self.optimizer.zero_grad(set_to_none=True)
                parts.loss.backward()
                self.optimizer.step()
                self.step += 1
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == self.total:
                    bar.set_postfix_str(_postfix(parts, cfg.px_weight > 0), refresh=False)
                if self.step % cfg.validate_every == 0 or self.step == self.total:
                    val_acc = self.accuracy(self.data.val)
                    trip = self.guard.check_validation(self.step, val_acc)
                    if all_agree(trip is not None, self.info):
                        self._rollback(trip or Trip(self.step, "collapse on another rank"), bar)
                        continue
                    log.info("step %d: val acc %.4f", self.step, val_acc)
                    self._check_health(bar)
                    self.good = self._snapshot()
                if self.step % cfg.checkpoint_every == 0 and self.step < self.total:
                    self._checkpoint(time.monotonic() - started)
        return self._finish(time.monotonic() - started)

    def _check_health(self, bar: tqdm[Any]) -> None:
        """Log the generative part's health figures (training/health.py); warn if it is stuck."""
        if self.health is None or self.step <= self.config.px_start:
            return
        health = self.health.measure(self.step, self.model, self.buffer.x)
        log.info(health.line())
        warning = self.health.warning(health, self.step - self.config.px_start)
        if warning is not None:
            log.warning(warning)
            if self.progress:
                bar.write(f"warning: {warning}")

    def _rollback(self, trip: Trip, bar: tqdm[Any]) -> None:
        self.trips.append(trip)
        cfg = self.config
        if len(self.trips) > cfg.guard_retries:
            log.error("divergence at step %d (%s); giving up", trip.step, trip.reason)
            raise TrainingDiverged(self.trips, cfg.guard_retries)
        self._restore_snapshot(self.good)
        self.lr_scale *= cfg.guard_lr_factor
        attempt = len(self.trips)
        # a new seed: the same noise would walk the chains into the same trouble again
        self.gen.manual_seed(derive_seed(cfg.seed, self.info.rank, attempt, 0))
        self.buffer_gen.manual_seed(derive_seed(cfg.seed, self.info.rank, attempt, 1))
        if self.cuda is not None:
            self.cuda.reseed(attempt)
        message = (
            f"rollback {attempt}/{cfg.guard_retries}: {trip.reason} at step {trip.step}; "
            f"back to step {self.step}, reseeded, lr x{self.lr_scale:g}"
        )
        log.warning(message)
        if self.progress and self.info.is_main:
            bar.write(message)
        bar.reset(total=self.total)
        bar.update(self.step)

    # ------------------------------------------------------------------ state

    def _snapshot(self) -> dict[str, Any]:
        """The last good state, in memory, for the guard to roll back to."""
        return {
            "step": self.step,
            "model": copy.deepcopy(self.model.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "buffer": self.buffer.state_dict(),
        }

    def _restore_snapshot(self, snap: dict[str, Any]) -> None:
        self.step = int(snap["step"])
        self.model.load_state_dict(snap["model"])
        self.optimizer.load_state_dict(copy.deepcopy(snap["optimizer"]))
        self.buffer.load_state_dict(snap["buffer"])

    def restore(self, ref: str) -> ModelRef:
        """Continue the run saved in checkpoint ``ref``; see :mod:`training.resume`."""
        mref = restore_state(self, ref)
        self.good = self._snapshot()
        return mref

    def _training_info(self, elapsed: float) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "command": self.command,
            "step": self.step,
            "iterations": self.total,
            "duration_s": round(self.elapsed_before + elapsed, 2),
            "split": self.data.split,
            "dataset": self.data.name,
            "rollbacks": [t.to_dict() for t in self.trips],
            "health": self.health.summary() if self.health is not None else None,
            "device": str(self.device),
            "world_size": self.info.world_size,
            "torch_threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
        }

    def _checkpoint(self, elapsed: float) -> None:
        if self.info.is_main:
            draft = manifest_draft(
                stage="checkpoint",
                config=self.config,
                data=self.data,
                backbone=self.backbone,
                training=self._training_info(elapsed),
            )
            ref = save_version(
                self.store,
                self.name,
                self.model,
                draft,
                buffer=self.buffer.state_dict(),
                state=capture_state(self, elapsed),
            )
            log.info("checkpoint %s at step %d", ref, self.step)
            prune_checkpoints(self.store, self.name, self.run_id, self.config.keep_checkpoints)
        barrier(self.info)

    def _finish(self, elapsed: float) -> TrainResult:
        cfg = self.config
        metrics = {
            "val_accuracy": self.accuracy(self.data.val),
            "test_accuracy": self.accuracy(self.data.test),
        }
        ref = None
        if self.info.is_main:
            sampler = sgld_config(cfg, self.data.spec.value_range, cfg.sample_steps)
            # from uniform noise, as evaluation and the service generate: the hard case
            noise = UniformInit(*self.data.spec.value_range)
            x, y = class_conditional_samples(
                self.model, noise, self.data.spec.shape, sampler, 10, cfg.seed, self.device
            )
            draft = manifest_draft(
                stage="final",
                config=cfg,
                data=self.data,
                backbone=self.backbone,
                training=self._training_info(elapsed),
                metrics=dict(metrics),
            )
            ref = save_version(
                self.store,
                self.name,
                self.model,
                draft,
                buffer=compact_buffer(self.buffer.state_dict()) if cfg.px_weight > 0 else None,
                files={"samples.png": class_grid_png(x, y, self.data.class_names)},
            )
            prune_checkpoints(self.store, self.name, self.run_id, cfg.keep_checkpoints_final)
        barrier(self.info)
        return TrainResult(ref, self.step, self.elapsed_before + elapsed, metrics, self.trips)


def _postfix(parts: LossParts, generative: bool) -> str:
    text = f"loss {float(parts.loss.detach()):.3f} acc {parts.acc:.3f}"
    if generative:
        text += (
            f" gap {parts.gap:+.3f} E {parts.energy_data:.2f}"
            f" x[{parts.sample_min:.2f},{parts.sample_max:.2f}]"
        )
    if parts.data_grad_norm:
        text += f" |dE/dx| {parts.data_grad_norm:.2f}"
    return text
