"""The training loop: orchestrates data, model, SGLD, objective, guard and checkpoints.

Like minGPT's trainer, nothing in here knows what a JEM is beyond "it has logits and energies";
the math lives in ``jem`` and :mod:`training.objective`. Randomness comes from two generators per
rank (``main``: data noise, augmentation, SGLD noise; ``buffer``: chain draws and restarts) and
the batch order is a function of (seed, step), so the state saved in a checkpoint is all it
takes to continue bit-exactly. Rolling back after a divergence lives in :mod:`training.rollback`,
writing checkpoints and the final version in :mod:`training.trainer_saves`.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from jem import JEM, sgld_sample, use_fast_layout
from model_store import ModelRef, ModelStore
from training.accel import CudaPath
from training.batches import augment, batch_indices, derive_seed
from training.best import BestWeights, candidates_from
from training.build import (
    build_buffer,
    build_model,
    build_optimizer,
    lr_multiplier,
    resolve_backbone,
    sgld_config,
)
from training.config import TrainConfig
from training.data import Dataset, FolderOptions, LabeledImages, load_dataset
from training.datasets.normalization import with_normalization
from training.datasets.rendered_digits import add_to_training_split
from training.distributed import DistInfo, all_agree, barrier, setup
from training.ema import WeightAverage
from training.estimate import estimate_run
from training.guard import DivergenceGuard, Trip
from training.health import HealthMonitor, near_chance, never_starts
from training.mixing import mix_batch
from training.objective import LossParts, jem_loss
from training.resume import restore_state
from training.rollback import roll_back, snapshot
from training.trainer_saves import save_checkpoint, save_final

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
        # the moving average of the weights, when on, is what is validated and saved
        self.ema = WeightAverage(self.model, config.ema_decay) if config.ema_decay > 0 else None
        # the best validation's copy of those weights, when the run ships it (training/best.py)
        self.best: BestWeights | None = None
        if config.load_best_model_at_end:
            first = candidates_from(config.px_weight, config.px_start, config.px_warmup)
            self.best = BestWeights(first)
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
                source=config.extra_train,
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
        self.good = snapshot(self)
        self.health: HealthMonitor | None = None
        self.warned_chance = False
        if config.px_weight > 0 and self.info.is_main:
            train, val = self.data.train, self.data.val
            self.health = HealthMonitor(
                train.inputs(), train.labels, val.inputs(), self.data.spec.value_range
            )

    # ------------------------------------------------------------------ one step

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast on CUDA when ``amp`` allows it (auto, bf16); otherwise nothing."""
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
        mixed = None
        if cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0:  # the baseline only (config checks)
            mixed = mix_batch(
                x,
                mixup_alpha=cfg.mixup_alpha,
                cutmix_alpha=cfg.cutmix_alpha,
                seed=cfg.seed,
                step=self.step,
                rank=self.info.rank,
            )
            x = mixed.x
        x_sampled = None
        if cfg.px_weight > 0 and self.step >= cfg.px_start:
            # persistent chains: resume stored samples, run a few SGLD steps, store them back
            x0, slots = self.buffer.sample(cfg.sgld_batch_size or cfg.batch_size)
            if self.cuda is not None:
                x_sampled = self.cuda.sample(self.model, x0, self.sgld)
            else:
                with self.autocast():
                    x_sampled = sgld_sample(
                        self.model, x0.to(self.device), self.sgld, generator=self.gen
                    )
            self.buffer.update(slots, x_sampled)
        self.net.train()
        if cfg.grad_penalty > 0:
            x.requires_grad_(True)
        with self.autocast():
            # one forward over data and samples: one DDP all-reduce per step
            inputs = x if x_sampled is None else torch.cat([x, x_sampled])
            logits_all = self.net(inputs)
        logits, logits_sampled = logits_all[: len(x)], logits_all[len(x) :]
        if self.step == cfg.induce_divergence_at:  # test hook for the divergence guard
            logits = logits * float("nan")
        ramp = self.px_ramp()
        return jem_loss(
            logits,
            y,
            logits_sampled if x_sampled is not None else None,
            x_sampled,
            px_weight=cfg.px_weight * ramp,
            energy_reg=cfg.energy_reg * ramp,
            x_data=x,
            grad_penalty=cfg.grad_penalty,
            label_smoothing=cfg.label_smoothing,
            mixed=mixed,
        )

    def px_ramp(self) -> float:
        """The generative terms' share now: 0 -> 1 over ``px_warmup`` after ``px_start``."""
        cfg = self.config
        if cfg.px_warmup <= 0:
            return 1.0
        return min(1.0, max(0.0, (self.step - cfg.px_start + 1) / cfg.px_warmup))

    @property
    def shipped(self) -> JEM:
        """The weights validated, checkpointed and saved: the EMA's when on, else the model's."""
        return self.model if self.ema is None else cast(JEM, self.ema.module)

    @torch.no_grad()
    def accuracy(self, split: LabeledImages, batch_size: int = 500) -> float:
        model = self.shipped.eval()
        correct = 0
        for start in range(0, len(split), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(split)))
            logits = model(split.inputs(idx).to(self.device))
            correct += int((logits.argmax(1).cpu() == split.labels[idx]).sum())
        return correct / max(1, len(split))

    # ------------------------------------------------------------------ the loop

    def fit(self) -> TrainResult:
        cfg = self.config
        if self.info.is_main and (warning := never_starts(cfg.px_weight, cfg.px_start, self.total)):
            log.warning(warning)
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
                    roll_back(self, trip or Trip(self.step, "another rank diverged"), bar)
                    continue
                self.optimizer.zero_grad(set_to_none=True)
                parts.loss.backward()
                self.optimizer.step()
                if self.ema is not None:
                    self.ema.update(self.model)
                self.step += 1
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == self.total:
                    bar.set_postfix_str(parts.summary(cfg.px_weight > 0), refresh=False)
                if self.step % cfg.validate_every == 0 or self.step == self.total:
                    val_acc = self.accuracy(self.data.val)
                    trip = self.guard.check_validation(self.step, val_acc)
                    if all_agree(trip is not None, self.info):
                        roll_back(self, trip or Trip(self.step, "collapse on another rank"), bar)
                        continue
                    log.info("step %d: val acc %.4f", self.step, val_acc)
                    self._check_learning(val_acc, bar)
                    if self.best is not None:
                        self.best.consider(self.step, val_acc, self.shipped)
                    self._check_health(bar)
                    self.good = snapshot(self)
                if self.step % cfg.checkpoint_every == 0 and self.step < self.total:
                    self._checkpoint(time.monotonic() - started)
                elif self.step == self.total and self.best is not None:
                    # the final version will hold the chosen weights: keep the last ones too
                    self._checkpoint(time.monotonic() - started)
        return self._finish(time.monotonic() - started)

    def _check_learning(self, val_acc: float, bar: tqdm[Any]) -> None:
        """Warn once if validation accuracy stays near chance (training/health.py)."""
        warning = near_chance(self.step, self.total, val_acc, self.data.num_classes)
        if warning is not None and not self.warned_chance and self.info.is_main:
            self.warned_chance = True
            log.warning(warning)
            if self.progress:
                bar.write(f"warning: {warning}")

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

    # ------------------------------------------------------------------ state

    def restore(self, ref: str) -> ModelRef:
        """Continue the run saved in checkpoint ``ref``; see :mod:`training.resume`."""
        mref = restore_state(self, ref)
        self.good = snapshot(self)
        return mref

    def _checkpoint(self, elapsed: float) -> None:
        if self.info.is_main:
            save_checkpoint(self, elapsed)
        barrier(self.info)

    def _finish(self, elapsed: float) -> TrainResult:
        if self.best is not None:  # load_best_model_at_end: the best validation's weights
            self.best.finish(self.shipped, self.step)
        # the validation split only: a run is one candidate among others, and the test split is
        # read once a model is chosen (`calibrate` and `evaluate` measure it, never `train`), so
        # no printed figure of a sweep or a recipe search invites choosing on it
        metrics = {"val_accuracy": self.accuracy(self.data.val)}
        ref = save_final(self, elapsed, metrics) if self.info.is_main else None
        barrier(self.info)
        return TrainResult(ref, self.step, self.elapsed_before + elapsed, metrics, self.trips)
