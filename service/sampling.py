"""Generation by SGLD on a served model's energy, for :meth:`Predictor.resolve_generation` and
:meth:`Predictor.generate`: the request's parameters resolved against the manifest's sampling
settings and the service's limits, the chains' start (uniform noise, the replay buffer, or the
class Gaussians), the seeded run checked against its time budget, and each sample described.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from jem.sgld import SGLDConfig, sgld_sample
from service.errors import GenerationTimeout, InvalidParameters, NotReady
from service.images import encode_png, tensor_to_images
from service.schemas import GeneratedSample, GenerateRequest, GenerationParameters

if TYPE_CHECKING:
    from service.predictor import Predictor

__all__ = ["Generated", "GenerationLimits", "generate", "resolve_generation"]

_CHUNK_STEPS = 10  # SGLD steps between time-budget checks


@dataclass(frozen=True)
class GenerationLimits:
    max_samples: int
    max_steps: int
    max_step_size: float
    max_noise_std: float


@dataclass(frozen=True)
class Generated:
    x: torch.Tensor  # (B, C, H, W) in the model's value range
    samples: list[GeneratedSample]


def resolve_generation(
    predictor: Predictor, request: GenerateRequest, limits: GenerationLimits
) -> GenerationParameters:
    """Fill defaults from the manifest's sampling settings and check every limit."""
    sampling = predictor.loaded.manifest.sampling
    init = request.init or "noise"
    steps = request.steps if request.steps is not None else _default_steps(predictor, init)
    step_size = request.step_size
    if step_size is None:
        step_size = sampling.step_size if sampling else 1.0
    noise_std = request.noise_std
    if noise_std is None:
        noise_std = sampling.noise_std if sampling else 0.01
    clamp = sampling.clamp if sampling else predictor.spec.value_range
    problems = []
    if request.num_samples > limits.max_samples:
        problems.append(
            f"num_samples {request.num_samples} > {limits.max_samples} (JEM_GENERATION_MAX_SAMPLES)"
        )
    if steps > limits.max_steps:
        problems.append(f"steps {steps} > {limits.max_steps} (JEM_GENERATION_MAX_STEPS)")
    if step_size > limits.max_step_size:
        problems.append(
            f"step_size {step_size} > {limits.max_step_size} (JEM_GENERATION_MAX_STEP_SIZE)"
        )
    if noise_std > limits.max_noise_std:
        problems.append(
            f"noise_std {noise_std} > {limits.max_noise_std} (JEM_GENERATION_MAX_NOISE_STD)"
        )
    if init == "buffer" and predictor.buffer_x is None:
        problems.append(f"init 'buffer': {predictor.name}:{predictor.version} has no replay buffer")
    if init == "gaussian" and predictor.gaussian is None:
        problems.append(
            f"init 'gaussian': {predictor.name}:{predictor.version} has no class Gaussians "
            "(trained with buffer_init=uniform, or saved without its replay buffer); use 'noise'"
        )
    label: int | list[int] | None
    class_name: str | list[str] | None
    if isinstance(request.label, list):
        if len(request.label) != request.num_samples:
            problems.append(
                f"label lists {len(request.label)} classes for num_samples "
                f"{request.num_samples}; give one class per sample, or a single class"
            )
        label = [_label(predictor, v) for v in request.label]
        class_name = [predictor.class_names[k] for k in label]
    elif request.label is not None:
        label = _label(predictor, request.label)
        class_name = predictor.class_names[label]
    else:
        label, class_name = None, None
    if problems:
        raise InvalidParameters("; ".join(problems))
    return GenerationParameters(
        num_samples=request.num_samples,
        label=label,
        class_name=class_name,
        steps=steps,
        step_size=step_size,
        noise_std=noise_std,
        clamp=clamp,
        init=init,
        seed=request.seed if request.seed is not None else secrets.randbelow(2**63),
    )


def _default_steps(predictor: Predictor, init: str) -> int:
    """From noise: the manifest's sampling steps. From the buffer: the training chain length
    (the chains there are long-run samples already, advanced this much per training visit)."""
    manifest = predictor.loaded.manifest
    if init == "buffer":
        config = manifest.training.get("config")
        chain = config.get("sgld_steps") if isinstance(config, dict) else None
        if isinstance(chain, int) and chain > 0:
            return chain
    return manifest.sampling.steps if manifest.sampling else 200


def _label(predictor: Predictor, value: int | str) -> int:
    if isinstance(value, str):
        if value in predictor.class_names:
            return predictor.class_names.index(value)
        raise InvalidParameters(
            f"unknown class {value!r}; classes: {', '.join(predictor.class_names)} "
            f"(or an index 0..{len(predictor.class_names) - 1})"
        )
    if not 0 <= value < len(predictor.class_names):
        raise InvalidParameters(
            f"class index {value} out of range 0..{len(predictor.class_names) - 1}"
        )
    return value


def _targets(params: GenerationParameters) -> torch.Tensor | None:
    if params.label is None:
        return None
    if isinstance(params.label, list):
        return torch.tensor(params.label, dtype=torch.long)
    return torch.full((params.num_samples,), params.label, dtype=torch.long)


def _init(
    predictor: Predictor, params: GenerationParameters, y: torch.Tensor | None, g: torch.Generator
) -> torch.Tensor:
    n = params.num_samples
    if params.init == "gaussian" and predictor.gaussian is not None:
        return predictor.gaussian.sample(n, predictor.spec.shape, y, g)
    if params.init == "noise" or predictor.buffer_x is None or predictor.buffer_starts is None:
        low, high = predictor.spec.value_range
        return low + (high - low) * torch.rand((n, *predictor.spec.shape), generator=g)
    if y is None:
        idx = torch.randint(0, predictor.buffer_x.shape[0], (n,), generator=g)
    else:
        # class k's chains live in slots [starts[k], starts[k + 1]) (jem.buffer)
        starts = predictor.buffer_starts
        lo, size = starts[y], starts[y + 1] - starts[y]
        idx = lo + (torch.rand(n, generator=g) * size).long().clamp(max=size - 1)
    return predictor.buffer_x[idx].clone()


def generate(
    predictor: Predictor,
    params: GenerationParameters,
    deadline: float,
    on_steps: Callable[[int], None] | None,
    stop: threading.Event | None = None,
) -> Generated:
    placement = predictor.placement
    g = torch.Generator().manual_seed(params.seed)
    y = _targets(params)
    x = placement.to_device(_init(predictor, params, y, g))
    noise = g
    if placement.cuda:
        y = placement.to_device(y) if y is not None else None
        noise = torch.Generator(placement.device).manual_seed(params.seed)
    done = 0
    while done < params.steps:
        if placement.cuda:  # the clock below must see the queued steps finished
            torch.cuda.current_stream(placement.device).synchronize()
        if time.monotonic() > deadline:
            raise GenerationTimeout(
                f"generation stopped after {done} of {params.steps} SGLD steps: over the time "
                "budget (JEM_GENERATION_TIME_BUDGET_S); ask for fewer samples or steps"
            )
        if stop is not None and stop.is_set():
            raise NotReady(
                f"generation stopped after {done} of {params.steps} SGLD steps: the request was "
                "cancelled (the service is shutting down)"
            )
        chunk = min(_CHUNK_STEPS, params.steps - done)
        config = SGLDConfig(chunk, params.step_size, params.noise_std, params.clamp)
        with placement.autocast():
            x = sgld_sample(predictor.model, x, config, y, generator=noise)
        done += chunk
        if on_steps is not None:
            on_steps(chunk)
    out = placement.to_host(predictor.classify_on_device(x))
    x = x.cpu()
    probs, labels = (t.tolist() for t in out["probs"].max(dim=-1))
    energies = out["energy"].tolist()
    samples = [
        GeneratedSample(
            png_base64=base64.b64encode(encode_png(image)).decode(),
            label=int(labels[i]),
            class_name=predictor.class_names[int(labels[i])],
            confidence=float(probs[i]),
            energy=float(energies[i]),
        )
        for i, image in enumerate(tensor_to_images(x, predictor.spec))
    ]
    return Generated(x, samples)
