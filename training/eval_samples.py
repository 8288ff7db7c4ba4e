"""Class-conditional samples for evaluation: drawn, judged, and scored against real digits.

Two sources, as in the paper: fresh chains from uniform noise (a long run, 200 steps: can the model
make a digit from nothing?) and the persistent replay buffer the model was trained with (short-run
chains that have been refined over the whole of training), advanced a further few steps under
E(x, y) so that each is conditioned on the label it is judged against.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from jem import JEM, SGLDConfig, UniformInit, sgld_sample
from jem.buffer import ReplayBuffer
from model_store import Manifest
from training.judges import frechet_distance, inception_score, network_features
from training.samples import class_conditional_samples

__all__ = [
    "NOISE_STEPS",
    "Samples",
    "generation_quality",
    "judge",
    "samples_from_buffer",
    "samples_from_noise",
    "sgld_config",
]

NOISE_STEPS = 200


@dataclass(frozen=True)
class Samples:
    x: Tensor
    y: Tensor
    source: str  # "noise" or "buffer"
    steps: int
    config: dict[str, Any]


def sgld_config(manifest: Manifest, steps: int) -> SGLDConfig:
    """The model's stored sampling settings (step size, noise, clamp) with `steps` steps."""
    s = manifest.sampling
    if s is None:
        return SGLDConfig(steps=steps)
    return SGLDConfig(steps=steps, step_size=s.step_size, noise_std=s.noise_std, clamp=s.clamp)


def samples_from_noise(
    model: JEM, manifest: Manifest, per_class: int, seed: int, steps: int = NOISE_STEPS
) -> Samples:
    config = sgld_config(manifest, steps)
    shape = tuple(manifest.input_spec.model_dump()[k] for k in ("channels", "height", "width"))
    x, y = class_conditional_samples(model, UniformInit(), shape, config, per_class, seed)
    return Samples(x, y, "noise", steps, _describe(config, seed))


def samples_from_buffer(
    model: JEM, manifest: Manifest, buffer: Mapping[str, Tensor], per_class: int, seed: int
) -> Samples:
    """Chains drawn from each class's slice of the stored buffer, then run the training chain
    length (the config's sgld_steps) further on E(x, y). No chain is re-initialised."""
    generator = torch.Generator().manual_seed(seed)
    replay = ReplayBuffer.from_state_dict(dict(buffer), generator=generator)
    replay.reinit_freq = 0.0
    y = torch.arange(model.num_classes).repeat_interleave(per_class)
    x0, _ = replay.sample(len(y), y)
    cfg = manifest.training.get("config")
    chain = cfg.get("sgld_steps") if isinstance(cfg, dict) else None
    steps = chain if isinstance(chain, int) else 20
    config = sgld_config(manifest, steps)
    x = sgld_sample(model, x0, config, y, generator=generator)
    return Samples(x, y, "buffer", steps, _describe(config, seed))


def _describe(config: SGLDConfig, seed: int) -> dict[str, Any]:
    return {
        "steps": config.steps,
        "step_size": config.step_size,
        "noise_std": config.noise_std,
        "clamp": list(config.clamp) if config.clamp else None,
        "seed": seed,
    }


def judge(samples: Samples, judges: Mapping[str, Callable[[Tensor], Tensor]]) -> dict[str, float]:
    """Fraction of samples each judge classifies as their conditioning label, and by all."""
    hits = {name: fn(samples.x) == samples.y for name, fn in judges.items()}
    result = {name: float(h.float().mean()) for name, h in hits.items()}
    if hits:
        result["all_judges"] = float(torch.stack(list(hits.values())).all(0).float().mean())
    return result


def generation_quality(
    feature_net: nn.Module, samples: Tensor, real_held_out: Tensor, real_test: Tensor
) -> dict[str, float]:
    """IS and FID of samples in `feature_net`'s feature space, beside held-out real digits.

    FID(real held-out, test) is the floor a perfect generator would reach with this many images;
    IS(real held-out) is the ceiling. The samples' FID is measured against the same test set.
    """
    f_test, _ = network_features(feature_net, real_test)
    f_real, p_real = network_features(feature_net, real_held_out)
    f_gen, p_gen = network_features(feature_net, samples)
    return {
        "fid_samples": frechet_distance(f_gen, f_test),
        "fid_real": frechet_distance(f_real, f_test),
        "is_samples": inception_score(p_gen),
        "is_real": inception_score(p_real),
        "n_samples": len(samples),
        "n_real": len(real_held_out),
        "n_test": len(real_test),
    }
