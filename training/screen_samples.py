"""Class-conditional samples judged on the screening side: `screen --samples STEPS`.

The report (`evaluate`) judges the model's samples from noise with a pixel SVC fitted on the
train split, drawn with its ``--seed`` (default 0). Comparing sampling settings (steps, step
size, the chains' start) by that figure would tune the reported number by hand, so `screen`
draws its samples with seeds the report does not use (:data:`SAMPLE_SEED_OFFSET` + ``--seed``)
and reports, per model and setting, the fraction the same kind of judge reads as the chain's
class, with the samples' roughness (:func:`training.health.roughness`, the training health
figures' r) and mean energy beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import torch

from jem import JEM, ClassGaussianInit, MixedInit, UniformInit
from jem.buffer import init_from_state_dict
from model_store import LoadedModel
from training.config import ConfigError
from training.data import Dataset
from training.eval_samples import sgld_config
from training.health import roughness
from training.judges import PixelSVCJudge, fit_pixel_judge
from training.samples import class_conditional_samples

__all__ = [
    "SAMPLE_INITS",
    "SAMPLE_SEED_OFFSET",
    "SampleSetting",
    "judged_samples",
    "pixel_judge_for",
]

SAMPLE_SEED_OFFSET = 1  # screen --seed S draws samples with seed 1 + S; the report's is 0
SAMPLE_INITS = ("noise", "gaussian")
SampleInit = Literal["noise", "gaussian"]


@dataclass(frozen=True)
class SampleSetting:
    """How to draw: ``steps`` SGLD steps from ``init`` ("noise": uniform on the value range, as
    the report's samples; "gaussian": the buffer's per-class Gaussians, the service's
    ``init: "gaussian"``); ``step_size``/``noise_std`` None take the manifest's sampling values."""

    steps: int
    init: SampleInit = "noise"
    step_size: float | None = None
    noise_std: float | None = None
    per_class: int = 10

    def __post_init__(self) -> None:
        problems = []
        if self.steps < 0:
            problems.append(f"steps must be >= 0, got {self.steps}")
        if self.per_class < 1:
            problems.append(f"per_class must be >= 1, got {self.per_class}")
        for name in ("step_size", "noise_std"):
            value = getattr(self, name)
            if value is not None and value < 0:
                problems.append(f"{name} must be >= 0, got {value}")
        if self.init not in SAMPLE_INITS:
            problems.append(f"init must be one of {', '.join(SAMPLE_INITS)}, got {self.init!r}")
        if problems:
            raise ConfigError("samples: " + "; ".join(problems))


def pixel_judge_for(loaded: LoadedModel, dataset: Dataset) -> PixelSVCJudge:
    """The report's pixel judge for ``loaded`` (:func:`training.judges.fit_pixel_judge` on what
    the model was trained on, a subset drawn as the report's default ``--seed`` 0 draws it)."""
    split = loaded.manifest.training.get("split")
    return fit_pixel_judge(dataset, split if isinstance(split, dict) else None, seed=0)


def _init(loaded: LoadedModel, init: SampleInit) -> UniformInit | ClassGaussianInit:
    if init == "noise":
        low, high = loaded.input_spec.value_range
        return UniformInit(low, high)
    state = {k[5:]: v for k, v in (loaded.buffer or {}).items() if k.startswith("init.")}
    gaussian = init_from_state_dict(state) if state else None
    if isinstance(gaussian, MixedInit):
        gaussian = gaussian.gaussian
    if not isinstance(gaussian, ClassGaussianInit):
        raise ConfigError(
            f"--sample-init gaussian: {loaded.ref} has no class Gaussians in its replay buffer "
            "(trained with buffer_init=uniform, or saved without a buffer); use noise"
        )
    return gaussian


def judged_samples(
    loaded: LoadedModel, judge: PixelSVCJudge, setting: SampleSetting, seed: int
) -> dict[str, Any]:
    """Draw ``setting.per_class`` chains per class with ``seed`` and judge them.

    Returns the setting as run (steps, step size, noise, init, seed, n), ``svc_pixels`` (the
    fraction the judge reads as the chain's class), ``roughness`` and ``energy`` (mean E(x)
    of the samples under the model). ConfigError for a Gaussian start the model lacks.
    """
    model = loaded.model
    if not isinstance(model, JEM):
        raise ConfigError(f"{loaded.ref} is not a JEM: it cannot be sampled")
    config = sgld_config(loaded.manifest, setting.steps)
    if setting.step_size is not None:
        config = replace(config, step_size=setting.step_size)
    if setting.noise_std is not None:
        config = replace(config, noise_std=setting.noise_std)
    shape = loaded.input_spec.shape
    init = _init(loaded, setting.init)
    x, y = class_conditional_samples(model, init, shape, config, setting.per_class, seed)
    with torch.no_grad():
        energy = float(model.energy(x).mean())
    return {
        "steps": config.steps,
        "step_size": config.step_size,
        "noise_std": config.noise_std,
        "init": setting.init,
        "seed": seed,
        "n": len(y),
        "svc_pixels": float((judge.predict(x) == y).float().mean()),
        "roughness": float(roughness(x).mean()),
        "energy": energy,
    }
