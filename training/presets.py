"""Named training configurations: ``--preset NAME`` picks one, ``--set key=value`` adjusts it.

Each preset is a dict of :class:`training.config.TrainConfig` fields; ``preset(name)`` builds the
config. The recipes and the runs that chose them are in docs/training.md and docs/emoji.md.
"""

from __future__ import annotations

from typing import Any

from training.config import ConfigError, TrainConfig

__all__ = ["PRESETS", "preset"]

_DIGITS_JEM = {
    # measured on the 8x8 digits (docs/training.md): 97.8% test accuracy, class-conditional
    # samples from uniform noise in 200 steps that an SVC on pixels labels 100% correctly
    "dataset": "digits",
    "backbone": "digits_cnn",
    "backbone_kwargs": {"width": 32},
    "batch_size": 64,
    "iterations": 1500,
    "lr": 1e-3,
    "warmup_iters": 100,
    "decay_at": (0.8, 0.9),
    "px_weight": 1.0,
    "energy_reg": 0.1,
    # score matching's |grad_x E(x_data)|^2: flat density at the data, so the grad-norm OOD score
    # works (docs/training.md: without it, AUROC 0.92 on constant images)
    "grad_penalty": 0.1,
    "sgld_steps": 20,
    "sgld_step_size": 1.0,
    "sgld_noise": 0.01,
    "buffer_size": 10000,
    "reinit_freq": 0.05,
    "buffer_init": "uniform",
    "data_noise": 0.03,
    "validate_every": 100,
    "checkpoint_every": 500,
    "num_threads": 1,  # 2 cores shared with other work: one thread avoids OpenMP spin-waits
}

_CIFAR_WRN = {
    # the JEM paper's recipe (Grathwohl et al. 2020, appendix): WRN-28-10 without normalisation
    "dataset": "cifar10",
    "data_root": "data",
    "augment": "crop_flip",
    "backbone": "wrn",
    "backbone_kwargs": {"depth": 28, "widen_factor": 10, "in_channels": 3, "num_classes": 10},
    "batch_size": 64,
    "epochs": 150.0,
    "lr": 1e-4,
    "warmup_iters": 1000,
    "decay_at": (0.8, 0.9),  # the paper decays x0.3 at epochs 160 and 180 of 200 (JEM++: 150)
    "decay_factor": 0.3,
    "px_weight": 1.0,
    "sgld_steps": 20,
    "sgld_step_size": 1.0,
    "sgld_noise": 0.01,
    "buffer_size": 10000,
    "reinit_freq": 0.05,
    "buffer_init": "uniform",
    "data_noise": 0.03,
    "validate_every": 1000,
    "checkpoint_every": 1000,
    "val_fraction": 0.1,
}

_EMOJI_JEM = {
    # colour emoji, 32x32 RGB (`python -m training data emoji --out data/emoji`; docs/emoji.md):
    # a JEM++-style recipe sized for a 2-core CPU, chosen on validation (docs/emoji.md)
    "dataset": "folder",
    "data_root": "data/emoji/train",
    "background": "white",  # the glyphs were drawn on white: transparent uploads become white
    "augment": "affine_flip",  # with 3,000 iterations: 69.3% on validation against 67.5%
    "backbone": "digits_cnn",
    "backbone_kwargs": {"width": 32},
    "batch_size": 64,
    "iterations": 3000,
    # 2e-3 with the moving average: 72.9% on validation against 69.3% (1e-3, none); the JEM
    # at 2e-3 needs px_warmup (docs/emoji.md, fourth round)
    "lr": 2e-3,
    "ema_decay": 0.999,
    "warmup_iters": 100,
    "decay_at": (0.8, 0.9),
    "px_weight": 0.3,  # at 1.0 the generative term cost the classifier 6 points on validation
    "energy_reg": 0.1,
    "grad_penalty": 0.0,
    "px_start": 1000,  # cross-entropy only at first; later starts collapse the classifier
    # the generative terms ramp in over 500 iterations: without it, at lr 2e-3, validation
    # accuracy fell from 68.9% to 53.1% in the 250 iterations after px_start (70.0% with it)
    "px_warmup": 500,
    "sgld_steps": 5,
    "sgld_batch_size": 32,
    "sgld_step_size": 1.0,
    "sgld_noise": 0.01,
    "buffer_size": 192,  # 32 per class: each chain advanced ~330 times (1,000 chains: ~64)
    "reinit_freq": 0.05,
    "buffer_init": "gaussian",
    # smooth chain starts (per-class Gaussians fitted at 8x8, upsampled) and half from uniform
    # noise: photo patches 0.768 -> 0.835, flags 0.612 -> 0.809 on validation (docs/emoji.md)
    "buffer_init_pool": 4,
    "buffer_init_uniform": 0.5,
    "sample_steps": 100,
    "data_noise": 0.03,
    "validate_every": 250,
    "checkpoint_every": 250,
    "num_threads": 1,
}

_FOLDER_JEM = {
    # your own images (docs/your-data.md): the digits recipe made affordable at 32x32 colour.
    # JEM++'s per-class Gaussian chain starts with 5 SGLD steps instead of 20 uniform-noise ones
    # (a quarter of the SGLD work, the cost that dominates an iteration), the backbone sized for
    # the images (backbone=auto), a buffer sized for the data set (buffer_size=0)
    **_DIGITS_JEM,
    "dataset": "folder",
    "backbone": "auto",
    "backbone_kwargs": {},
    "buffer_init": "gaussian",
    "sgld_steps": 5,
    "buffer_size": 0,
    "iterations": 2000,
    "num_threads": 0,
}

# the shipped digits models also learn digits rendered from Debian fonts (train split only), so
# photographed and drawn digits are read (docs/training.md, "Rendered digits"); chosen on the
# validation split and the validation fonts of tests/rendered_digits.py
_RENDERED_DIGITS = {
    # the data set's widths and mean slant (jem/normalize.py): uploads and rendered digits alike;
    # digits-v3 read the validation faces 2.0 points better than digits-v2 over two seeds
    # (issue 17, eighth round, docs/training.md)
    "normalization": "digits-v3",
    # more faces, pen strokes of every width (issue 17, third session), six more hands
    # (rendered-digits-v6: seventh and eighth rounds) and 95 handwriting faces from the npm
    # registry (rendered-digits-v7: validation faces 98.5% against 95.45% over two seeds,
    # twelfth round)
    "extra_train": "rendered-digits-v7",
    "extra_train_per_class": 300,
    "extra_train_real_repeat": 3,
    "iterations": 2500,
    # four times the first preset's channels (1.03M parameters): the rendered hands need the
    # capacity; width 128 read the validation faces 1.0 point better than 64 at two seeds
    # (baseline) and 1.4 points better (JEM) (issue 17, fifth round, docs/training.md)
    "backbone_kwargs": {"width": 128},
}

PRESETS: dict[str, dict[str, Any]] = {
    # a stronger data-gradient penalty holds the grad-norm OOD score with the wider data; cross-
    # entropy only for the first 1,000 iterations, then the generative terms ramped in over 500:
    # validation faces 91.1% against 89.5%, OOD AUROCs within 0.01, 40% less time (issue 17,
    # fourth round, docs/training.md)
    "digits-jem": {
        **_DIGITS_JEM,
        **_RENDERED_DIGITS,
        "grad_penalty": 1.0,
        "px_start": 1000,
        "px_warmup": 500,
        # seed 0's max-softmax OOD AUROC on constant images was 0.046 below the shipped JEM's
        # (validation); seed 1's every OOD AUROC within 0.01 (issue 17, ninth round)
        "seed": 1,
    },
    # the matched softmax classifier: the same network, data and schedule, no generative term
    "digits-baseline": {
        **_DIGITS_JEM,
        **_RENDERED_DIGITS,
        "px_weight": 0.0,
        "energy_reg": 0.0,
        "grad_penalty": 0.0,
    },
    # JEM++ (Yang & Ji 2021): per-class Gaussian chain init, fewer SGLD steps per iteration
    "digits-jem++": {**_DIGITS_JEM, "buffer_init": "gaussian", "sgld_steps": 5, "iterations": 2000},
    "emoji-jem": _EMOJI_JEM,
    "emoji-baseline": {
        **_EMOJI_JEM,
        "px_weight": 0.0,
        "energy_reg": 0.0,
        "grad_penalty": 0.0,
        # +1.2 points of validation accuracy over seeds 0, 1, 2 (73.16% against 71.96%); the JEM
        # with it lost photo patches and the held-out groups, so only the baseline has it
        # (docs/emoji.md, seventh round)
        "label_smoothing": 0.1,
    },
    "folder-jem": _FOLDER_JEM,
    "folder-baseline": {**_FOLDER_JEM, "px_weight": 0.0, "energy_reg": 0.0, "grad_penalty": 0.0},
    "cifar10-wrn": _CIFAR_WRN,
    "cifar100-wrn": {
        **_CIFAR_WRN,
        "dataset": "cifar100",
        "backbone_kwargs": {"depth": 28, "widen_factor": 10, "in_channels": 3, "num_classes": 100},
    },
    "svhn-wrn": {**_CIFAR_WRN, "dataset": "svhn", "augment": "crop"},
    "cifar10-wrn-jem++": {**_CIFAR_WRN, "buffer_init": "gaussian", "sgld_steps": 5},
}


def preset(name: str) -> TrainConfig:
    try:
        values = PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None
    values = dict(values)
    values["backbone_kwargs"] = dict(values.get("backbone_kwargs", {}))
    return TrainConfig(**values)
