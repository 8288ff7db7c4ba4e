"""One typed training configuration and its ``key=value`` overrides (presets: training/presets.py).

The whole config is stored in every checkpoint's manifest (``training.config``), so a run can be
resumed or reproduced from the manifest alone, as nanoGPT stores ``model_args`` beside its weights.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from training.config_values import ConfigError, coerce, value_problems

__all__ = [
    "ConfigError",
    "TrainConfig",
    "apply_overrides",
]


@dataclass
class TrainConfig:
    # data
    dataset: str = "digits"
    data_root: str | None = None
    download: bool = False
    split_seed: int = 0
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    augment: Literal[
        "none", "crop", "crop_flip", "affine_flip", "affine_flip_jitter", "affine_flip_erase"
    ] = "none"
    data_noise: float = 0.03  # Gaussian noise added to data inputs (JEM: sigma = 0.03)
    # extra images for the train split only (validation and test stay the data set's own):
    # "rendered-digits-v1", "-v2" or "-v6" (training/datasets/rendered_digits.py), N per class,
    # seeded; the data set's own training images repeated `extra_train_real_repeat` times (not
    # swamped)
    extra_train: Literal[
        "", "rendered-digits-v1", "rendered-digits-v2", "rendered-digits-v6", "rendered-digits-v7"
    ] = ""
    extra_train_per_class: int = 0
    extra_train_seed: int = 0
    extra_train_real_repeat: int = 1
    # the digits data set's upload normalisation (jem/normalize.py), stored in the manifest and
    # applied to the rendered training digits and to uploads: "" keeps the data set's default
    normalization: Literal["", "digits-v1", "digits-v2", "digits-v3"] = ""
    # folder data only: how every image is converted (stored in the manifest's input spec, and
    # applied the same way by the service to uploads)
    image_size: tuple[int, ...] = (32, 32)  # (height, width), or one number for a square
    color_mode: Literal["auto", "RGB", "L"] = "auto"  # auto: L if every image is greyscale
    resample: Literal["nearest", "bilinear", "bicubic", "lanczos", "box"] = "bilinear"
    background: str = "auto"  # transparent pixels: auto (black), white, black or #rrggbb
    # network
    backbone: str = "auto"  # auto: digits_cnn up to 16 px, else WRN-10-2 (training.build)
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    # optimisation
    batch_size: int = 64
    iterations: int = 2000
    epochs: float = 0.0  # > 0 overrides iterations: ceil(epochs * train size / batch size)
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 0.0
    warmup_iters: int = 1000
    # after the warm-up: "step" multiplies the lr by decay_factor at each of decay_at; "cosine"
    # anneals it to 0 along a half cosine over the rest of the run (SGDR without restarts)
    lr_schedule: Literal["step", "cosine"] = "step"
    decay_at: tuple[float, ...] = (0.8, 0.9)  # fractions of the run (< 1) or iteration numbers
    decay_factor: float = 0.3
    # > 0: validate, checkpoint and ship an exponential moving average of the weights with this
    # decay per optimiser step (training/ema.py); 0: the last weights
    ema_decay: float = 0.0
    # ship the weights of the best validation (from px_start + px_warmup on for a JEM), not the
    # last step's; the manifest records which step and every candidate's figure (training/best.py)
    load_best_model_at_end: bool = False
    # cross-entropy against targets mixed with the uniform distribution (Szegedy et al. 2016;
    # torch.nn.functional.cross_entropy's ``label_smoothing``); in [0, 1), 0: plain targets
    label_smoothing: float = 0.0
    # the baseline only (px_weight = 0): train on mixed pairs of a batch's images and targets,
    # mixing weight ~ Beta(a, a) per batch (training/mixing.py): mixup (Zhang et al. 2018) or
    # CutMix (Yun et al. 2019); 0: off. At most one of the two.
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    # the generative term
    px_weight: float = 1.0
    energy_reg: float = 0.0  # weight of mean(E_data^2 + E_sample^2)
    grad_penalty: float = 0.0  # weight of mean ||grad_x E(x_data)||^2 (score matching's first term)
    px_start: int = 0  # iterations of cross-entropy only before the generative term starts
    # iterations over which px_weight and energy_reg ramp linearly from 0 after px_start, so
    # Adam's second moments, fitted to cross-entropy alone, can adapt to the new gradients
    px_warmup: int = 0
    sgld_steps: int = 20
    sgld_batch_size: int = 0  # chains advanced per iteration; 0: batch_size
    sgld_step_size: float = 1.0
    sgld_noise: float = 0.01
    sgld_clamp: bool = True  # clamp chains to the data range after every step
    buffer_size: int = 0  # chains; 0: auto, one per training image within [50 per class, 10000]
    reinit_freq: float = 0.05
    buffer_init: Literal["uniform", "gaussian"] = "uniform"
    # gaussian init only: > 1 fits a full-covariance Gaussian per class to the images average-
    # pooled this many pixels square, sampled smooth at full size (jem.ClassGaussianInit)
    buffer_init_pool: int = 1
    # gaussian init only: this fraction of fresh chains (fill and restarts) from uniform noise
    # instead (jem.MixedInit), so rough images stay among the negatives
    buffer_init_uniform: float = 0.0
    # defaults stored for generation (the service and evaluation): steps from the init
    sample_steps: int = 200
    # bookkeeping
    seed: int = 0
    validate_every: int = 250
    checkpoint_every: int = 500
    keep_checkpoints: int = 2  # checkpoint versions of a run kept while it runs
    keep_checkpoints_final: int = 0  # ... and once its final version is written
    log_every: int = 10
    estimate_iters: int = 2  # iterations timed before the run to estimate its length (0: none)
    device: str = "auto"  # auto: cuda > mps > cpu
    amp: Literal["auto", "bf16", "off"] = "auto"  # auto: bf16 autocast on CUDA only
    sgld_cuda_graph: bool = True  # on CUDA, capture the SGLD chain in a CUDA graph
    num_threads: int = 0  # CPU threads for torch; 0 leaves torch's default
    # divergence guard
    guard_max_energy: float = 1e4  # |E| of data or samples above this is divergence
    guard_max_pixel: float = 10.0  # sampled pixels beyond this many times the data range
    guard_collapse_drop: float = 0.3  # val accuracy this far below its best is a collapse
    guard_retries: int = 3
    guard_lr_factor: float = 0.5
    induce_divergence_at: int = -1  # test hook: poison the loss at this iteration (-1: never)

    def __post_init__(self) -> None:
        self.decay_at = tuple(float(d) for d in self.decay_at)
        problems = []
        for key in ("batch_size", "checkpoint_every", "validate_every", "log_every"):
            if getattr(self, key) < 1:
                problems.append(f"{key} must be >= 1")
        if self.buffer_size < 0:
            problems.append("buffer_size must be >= 0 (0: auto)")
        if self.iterations < 1 and self.epochs <= 0:
            problems.append("iterations must be >= 1 (or set epochs > 0)")
        if not 0 <= self.reinit_freq <= 1:
            problems.append("reinit_freq must be in [0, 1]")
        if self.lr <= 0:
            problems.append("lr must be > 0")
        if not 0 <= self.ema_decay < 1:
            problems.append("ema_decay must be in [0, 1) (0: no moving average)")
        if not 0 <= self.label_smoothing < 1:
            problems.append("label_smoothing must be in [0, 1) (0: plain targets)")
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            problems.append("mixup_alpha and cutmix_alpha must be >= 0 (0: off)")
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            problems.append("set one of mixup_alpha and cutmix_alpha, not both")
        if (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.px_weight > 0:
            problems.append(
                "mixup_alpha and cutmix_alpha need px_weight=0 (a softmax baseline): a JEM's "
                "energy term would lower the energy of the mixed images"
            )
        if self.px_warmup < 0:
            problems.append("px_warmup must be >= 0")
        if self.px_weight < 0 or self.energy_reg < 0 or self.grad_penalty < 0:
            problems.append("px_weight, energy_reg and grad_penalty must be >= 0")
        if self.extra_train and self.extra_train_per_class < 1:
            problems.append("extra_train needs extra_train_per_class >= 1")
        if self.extra_train_real_repeat < 1:
            problems.append("extra_train_real_repeat must be >= 1")
        if self.normalization and self.dataset != "digits":
            problems.append("normalization is for the digits data set only")
        if self.buffer_init_pool < 1:
            problems.append("buffer_init_pool must be >= 1")
        if not 0 <= self.buffer_init_uniform <= 1:
            problems.append("buffer_init_uniform must be in [0, 1]")
        if self.guard_retries < 0:
            problems.append("guard_retries must be >= 0")
        problems += value_problems(self)
        self.image_size = tuple(int(v) for v in self.image_size)
        if len(self.image_size) not in (1, 2) or min(self.image_size) < 4:
            problems.append("image_size must be one size or height,width, each >= 4")
        if problems:
            raise ConfigError("invalid training config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["decay_at"] = list(self.decay_at)
        d["image_size"] = list(self.image_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        unknown = set(d) - set(field_names())
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}; valid: {valid_keys()}")
        values = dict(d)
        for key in ("decay_at", "image_size"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def total_iterations(self, train_size: int) -> int:
        if self.epochs > 0:
            return max(1, -(-int(self.epochs * train_size) // self.batch_size))
        return self.iterations

    def decay_iterations(self, total: int) -> list[int]:
        return sorted(int(d * total) if d < 1 else int(d) for d in self.decay_at)


@functools.cache
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


# keys that change what a run keeps, prints or where it reads its data from, not what it trains
KEEP_AND_LOG_KEYS = frozenset(
    {
        "keep_checkpoints",
        "keep_checkpoints_final",
        "checkpoint_every",
        "log_every",
        "estimate_iters",
        "data_root",
    }
)


def config_differences(
    a: Mapping[str, Any], b: Mapping[str, Any], ignore: frozenset[str] = frozenset()
) -> list[str]:
    """The keys (sorted, ``ignore`` aside) whose values differ between two configs as dicts
    (`TrainConfig.to_dict()` or a manifest's ``training.config``), compared as JSON, so that a
    tuple and the list a manifest stored it as are equal; a key missing on one side differs."""
    a, b = json.loads(json.dumps(dict(a))), json.loads(json.dumps(dict(b)))
    return sorted(k for k in set(a) | set(b) if k not in ignore and a.get(k) != b.get(k))


def valid_keys() -> str:
    return ", ".join(field_names())


# ----------------------------------------------------------------------------- overrides


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``key=value`` strings, parsing each value as its field's type."""
    hints = _hints()
    values = config.to_dict()
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value")
        if key not in hints:
            close = difflib.get_close_matches(key, hints, n=3, cutoff=0.8)
            hint = f"did you mean {' or '.join(map(repr, close))}?" if close else None
            raise ConfigError(
                f"unknown config key {key!r}; {hint or 'valid keys: ' + valid_keys()}"
            )
        values[key] = coerce(key, raw.strip(), hints[key])
    return TrainConfig.from_dict(values)
