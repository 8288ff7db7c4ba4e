"""What a served JEM looks like through the Open Inference Protocol; shared by REST and gRPC.

Inputs (send exactly one per request; N images, at most JEM_MAX_IMAGES_PER_REQUEST):
  `pixels`        FP32  [N, C, H, W]  values in the model's value range (default [-1, 1])
  `pixels_uint8`  UINT8 [N, H, W, C]  0..255, converted as /v1 converts uploaded pixels
  `images`        BYTES [N, 1] or [N] encoded image files (PNG, JPEG, ...), decoded as /v1 does
Outputs, per image (the request's `outputs` picks them; the default leaves out the ones that
need a backward pass, marked *):
  `logits` FP32 [N, K], `probabilities` FP32 [N, K] (softmax(logits / T), calibrated),
  `label` INT64 [N], `class_name` BYTES [N], `energy` FP32 [N] (E(x) = -logsumexp(logits)),
  `max_softmax` FP32 [N] (1 - max p(y|x)), `grad_norm`* FP32 [N] (||grad_x log p(x)||),
  and, for calibrated models, the OOD verdicts (BOOL [N], true = out-of-distribution):
  `ood_energy`, `ood_max_softmax`, `ood_grad_norm`*, `ood`* (all scores combined, as /v1/ood).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from jem import uint8_to_tensor
from service.errors import InvalidInput, TooManyImages, UnknownModel
from service.images import decode_base64, decode_image, images_to_tensor, pixels_to_tensor
from service.predictor import Predictor
from service.runtime import COMBINED, Runtime
from service.schemas import ScoreVerdict
from service.v2.classification import class_count, classify
from service.v2.tensors import InferTensor

__all__ = [
    "DEFAULT_OUTPUTS",
    "OUTPUTS",
    "PLATFORM",
    "InferResult",
    "InputTensor",
    "base64_element",
    "infer",
    "inputs_of",
    "model_metadata",
    "outputs_of",
    "resolve",
]

PLATFORM = "pytorch_jem"
# Decoding this many encoded bytes or fewer stays on the event loop (as /v1 does, see
# service/inputs.py): a hop to a worker thread costs more than decoding a few small PNGs.
_INLINE_DECODE_BYTES = 16 * 1024


@dataclass(frozen=True)
class OutputSpec:
    datatype: str
    per_class: bool = False  # shape [N, K] rather than [N]
    grad: bool = False  # needs the gradient path (a backward pass)
    calibrated: bool = False  # only for models with a calibration in their manifest


OUTPUTS: dict[str, OutputSpec] = {
    "logits": OutputSpec("FP32", per_class=True),
    "probabilities": OutputSpec("FP32", per_class=True),
    "label": OutputSpec("INT64"),
    "class_name": OutputSpec("BYTES"),
    "energy": OutputSpec("FP32"),
    "max_softmax": OutputSpec("FP32"),
    "grad_norm": OutputSpec("FP32", grad=True),
    "ood_energy": OutputSpec("BOOL", calibrated=True),
    "ood_max_softmax": OutputSpec("BOOL", calibrated=True),
    "ood_grad_norm": OutputSpec("BOOL", grad=True, calibrated=True),
    "ood": OutputSpec("BOOL", grad=True, calibrated=True),
}
DEFAULT_OUTPUTS = tuple(name for name, spec in OUTPUTS.items() if not spec.grad)


class InputTensor(NamedTuple):
    """One way to send a batch: its datatype, the shape of one image, and its layout (in
    Triton's model configuration terms). `reshape`, where given, is a second shape per image
    the input is also accepted in: Triton's `reshape` of a configuration input, with which a
    batching model takes one scalar per image as `dims: [1]` (Triton's configurations must
    give at least one dimension: perf_analyzer refuses an input with none)."""

    datatype: str
    shape: tuple[int, ...]
    layout: str
    reshape: tuple[int, ...] | None = None

    def accepts(self, per_image: tuple[int, ...]) -> bool:
        return per_image == self.shape or per_image == self.reshape


def inputs_of(predictor: Predictor) -> dict[str, InputTensor]:
    """The three inputs (send exactly one per request), per image; the batch dimension leads."""
    spec = predictor.spec
    return {
        "pixels": InputTensor("FP32", (spec.channels, spec.height, spec.width), "FORMAT_NCHW"),
        "pixels_uint8": InputTensor(
            "UINT8", (spec.height, spec.width, spec.channels), "FORMAT_NHWC"
        ),
        "images": InputTensor("BYTES", (1,), "FORMAT_NONE", reshape=()),
    }


def resolve(runtime: Runtime, name: str, version: str | None) -> Predictor:
    """The served predictor for `name` (and `version`, when given). UnknownModel / NotReady."""
    predictor = runtime.predictor(name)
    if version and version != str(predictor.version):
        raise UnknownModel(
            f"model {name!r} version {version!r} is not served here; "
            f"served version: {predictor.version}"
        )
    return predictor


def outputs_of(predictor: Predictor) -> dict[str, OutputSpec]:
    return {n: s for n, s in OUTPUTS.items() if predictor.calibrated or not s.calibrated}


def model_metadata(predictor: Predictor) -> dict[str, Any]:
    """The protocol's model metadata (dynamic batch dimension: -1)."""
    k = len(predictor.class_names)
    return {
        "name": predictor.name,
        "versions": [str(predictor.version)],
        "platform": PLATFORM,
        "inputs": [
            {"name": name, "datatype": t.datatype, "shape": [-1, *t.shape]}
            for name, t in inputs_of(predictor).items()
        ],
        "outputs": [
            {"name": n, "datatype": s.datatype, "shape": [-1, k] if s.per_class else [-1]}
            for n, s in outputs_of(predictor).items()
        ],
    }


def base64_element(value: str, index: int) -> bytes:
    """A BYTES image in JSON: base64 text (image files are not UTF-8 strings)."""
    return decode_base64(value, name=f"images[{index}]")


def _decode(items: Sequence[bytes], predictor: Predictor, max_pixels: int) -> torch.Tensor:
    spec = predictor.spec
    arrays = [
        decode_image(data, spec, max_pixels=max_pixels, name=f"images[{i}]")
        for i, data in enumerate(items)
    ]
    return images_to_tensor(arrays, spec)


async def _batch(
    inputs: Sequence[InferTensor], runtime: Runtime, predictor: Predictor
) -> torch.Tensor:
    if len(inputs) != 1:
        got = f": {', '.join(repr(t.name) for t in inputs)}" if inputs else ""
        raise InvalidInput(
            f"send exactly one input tensor ('pixels', 'pixels_uint8' or 'images'); "
            f"got {len(inputs)}{got}. Each is optional in the model's configuration; a tool "
            "that fills every input (perf_analyzer without --input-data) must be given data "
            "for one"
        )
    (t,) = inputs
    spec = predictor.spec
    expected = inputs_of(predictor)
    if t.name not in expected:
        raise InvalidInput(f"unknown input {t.name!r}; inputs: {', '.join(expected)}")
    wanted = expected[t.name]
    if t.datatype != wanted.datatype:
        raise InvalidInput(f"input {t.name!r} must be {wanted.datatype}, got {t.datatype}")
    if not t.shape or not wanted.accepts(tuple(t.shape[1:])):
        shapes = [s for s in (wanted.shape, wanted.reshape) if s is not None]
        raise InvalidInput(
            f"input {t.name!r} has shape {list(t.shape)}; expected "
            + " or ".join(f"[N{''.join(f', {d}' for d in s)}]" for s in shapes)
        )
    n, limit = t.shape[0], runtime.settings.max_images_per_request
    if n == 0:
        raise InvalidInput(f"input {t.name!r} holds no images")
    if n > limit:
        raise TooManyImages(
            f"{n} images in one request; the limit is {limit} (JEM_MAX_IMAGES_PER_REQUEST): "
            "split them over several requests"
        )
    if t.name == "pixels":
        return pixels_to_tensor(
            t.data,
            spec,
            "float",
            "send 0..255 as the input 'pixels_uint8' (UINT8) instead",
            float_term="in the FP32 input 'pixels'",
        )
    if t.name == "pixels_uint8":
        return uint8_to_tensor(np.array(t.data), spec)  # a writable copy for torch
    items = list(t.data.reshape(-1))  # [N] or [N, 1]
    max_pixels = runtime.settings.max_image_pixels
    if sum(len(b) for b in items) <= _INLINE_DECODE_BYTES:
        return _decode(items, predictor, max_pixels)
    return await asyncio.to_thread(_decode, items, predictor, max_pixels)


@dataclass(frozen=True)
class InferResult:
    model_name: str
    model_version: str
    outputs: list[InferTensor]


def _requested(predictor: Predictor, names: Sequence[str] | None) -> list[str]:
    available = outputs_of(predictor)
    if not names:
        return [n for n in DEFAULT_OUTPUTS if n in available]
    unknown = [n for n in names if n not in available]
    if unknown:
        extra = "" if predictor.calibrated else " (OOD verdicts need a calibrated model)"
        raise InvalidInput(f"unknown output {unknown[0]!r}; outputs: {', '.join(available)}{extra}")
    if len(set(names)) != len(names):
        raise InvalidInput("an output is requested twice")
    return list(names)


def _top_counts(predictor: Predictor, class_counts: Mapping[str, Any]) -> dict[str, int]:
    """The checked `classification` parameters (only requests that send one pay for this)."""
    per_class = {n: s.per_class for n, s in outputs_of(predictor).items()}
    return {n: class_count(n, v, per_class) for n, v in class_counts.items()}


def _np(t: torch.Tensor) -> np.ndarray:
    """FP32 numpy on the CPU, wherever the model ran."""
    return t.detach().float().cpu().numpy()


def _flags(predictor: Predictor, score: str, values: list[float]) -> list[ScoreVerdict]:
    return [predictor.verdict(score, v) for v in values]


async def infer(
    runtime: Runtime,
    predictor: Predictor,
    inputs: Sequence[InferTensor],
    outputs: Sequence[str] | None,
    class_counts: Mapping[str, Any] | None = None,
) -> InferResult:
    """Run the batch through the shared micro-batchers; only the requested work is done.

    `class_counts`: requested output -> its `classification` parameter as sent (the
    classification extension, service/v2/classification.py); those outputs come back as their
    top classes. InvalidInput for a count that is not a positive integer or an output that has
    no classes.
    """
    names = _requested(predictor, outputs)
    top = _top_counts(predictor, class_counts) if class_counts else {}
    x = await _batch(inputs, runtime, predictor)
    if any(OUTPUTS[n].grad for n in names):
        (out, _), (grad, _) = await asyncio.gather(
            runtime.classify(predictor, x), runtime.grad(predictor, x)
        )
    else:
        (out, _), grad = await runtime.classify(predictor, x), None
    n = int(x.shape[0])
    energies = out["energy"].tolist()
    # per score, its values when computed; its verdicts once asked for (below)
    values = {s: out[s].tolist() for s in ("energy", "max_softmax")}
    if grad is not None:
        values["grad_norm"] = grad["grad_norm"].tolist()
    verdicts: dict[str, list[ScoreVerdict]] = {}

    def verdicts_of(score: str) -> list[ScoreVerdict]:
        if score not in verdicts:
            verdicts[score] = _flags(predictor, score, values[score])
        return verdicts[score]

    labels = out["probs"].argmax(dim=-1)
    tensors: list[InferTensor] = []
    decisions: dict[str, list[bool | None]] = {}
    for name in names:
        data: np.ndarray
        if name == "logits":
            data = _np(out["logits"])
        elif name == "probabilities":
            data = _np(out["probs"])
        elif name == "label":
            data = labels.cpu().numpy().astype(np.int64)
        elif name == "class_name":
            data = np.empty(n, dtype=object)
            data[:] = [predictor.class_names[i].encode() for i in labels.tolist()]
        elif name in ("energy", "max_softmax"):
            data = _np(out[name])
        elif name == "grad_norm":
            assert grad is not None
            data = _np(grad["grad_norm"])
        elif name == "ood":
            assert grad is not None
            combined = [r.flagged for r in predictor.ood_results(out, grad)]
            decisions[COMBINED] = combined
            data = np.array([bool(flag) for flag in combined])
        else:  # ood_<score>
            score = name.removeprefix("ood_")
            found = verdicts_of(score)
            decisions[score] = [v.flagged for v in found]
            data = np.array([bool(v.flagged) for v in found])
        tensor = InferTensor(name, OUTPUTS[name].datatype, tuple(data.shape), data)
        if name in top:
            tensor = classify(tensor, top[name], predictor.class_names)
        tensors.append(tensor)
    # what the answer holds: a score's values when it or its verdict was asked for, and the
    # verdicts asked for (service/runtime.py: Runtime.observe)
    returned = {s for s in values if s in names or f"ood_{s}" in names}
    runtime.observe(predictor.name, energies, {s: values[s] for s in sorted(returned)}, decisions)
    return InferResult(predictor.name, str(predictor.version), tensors)
