"""How a version's tensors become bytes and back, and how the manifest rebuilds the model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch
from torch import Tensor, nn

from jem import JEM, InputSpec, create_backbone
from model_store.errors import ChecksumMismatch, CorruptFile, IncompatibleWeights, InvalidManifest
from model_store.manifest import FileEntry, Manifest, ManifestDraft
from model_store.names import ModelRef, validate_filename

__all__ = [
    "BUFFER",
    "WEIGHTS",
    "LoadedModel",
    "build_model",
    "check_entry",
    "check_rebuildable",
    "encode_files",
    "tensor_filename",
    "tensors_from_bytes",
    "tensors_to_bytes",
]

WEIGHTS = "weights.safetensors"
BUFFER = "buffer.safetensors"
_TENSORS = ".safetensors"
_RESERVED = frozenset({"manifest.json", WEIGHTS, BUFFER})


@dataclass
class LoadedModel:
    ref: ModelRef
    model: JEM  # in eval mode, on the requested device
    manifest: Manifest
    buffer: dict[str, Tensor] | None  # the replay buffer's state dict, when one was saved
    path: Path

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec.from_dict(self.manifest.input_spec.model_dump())


def tensors_to_bytes(tensors: Mapping[str, Tensor]) -> bytes:
    # Contiguous CPU copies: tied, strided or CUDA tensors all serialise, and the caller's
    # tensors are never touched.
    for key, value in tensors.items():
        if not isinstance(value, Tensor):
            raise TypeError(f"{key!r} is a {type(value).__name__}; safetensors holds tensors only")
    return safetensors.torch.save(
        {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    )


def tensors_from_bytes(ref: ModelRef, filename: str, data: bytes) -> dict[str, Tensor]:
    """Parse safetensors bytes: a JSON header and raw arrays, never a pickle."""
    try:
        return safetensors.torch.load(data)
    except Exception as exc:  # the Rust parser raises its own exception types
        raise CorruptFile(str(ref), filename, f"not a safetensors file: {exc}") from None


def check_entry(ref: ModelRef, filename: str, entry: FileEntry, digest: str, size: int) -> None:
    if size != entry.size:
        problem = f"{size} bytes, the manifest says {entry.size}"
        raise ChecksumMismatch(str(ref), filename, problem)
    if digest != entry.sha256:
        problem = f"sha256 {digest[:16]}..., the manifest says {entry.sha256[:16]}..."
        raise ChecksumMismatch(str(ref), filename, problem)


def build_model(manifest: Manifest, path: Path) -> JEM:
    spec = manifest.backbone
    try:
        return JEM(create_backbone(spec.name, **spec.kwargs))
    except (TypeError, ValueError) as exc:
        raise InvalidManifest(path, f"backbone {spec.name!r} {spec.kwargs}: {exc}") from None


def check_rebuildable(
    name: str, draft: ManifestDraft, model: nn.Module, state: Mapping[str, Tensor]
) -> None:
    """Fail at save time, not at load time, when the manifest cannot rebuild this model."""
    spec = draft.backbone
    try:
        with torch.device("meta"):  # shapes only, no memory or initialisation cost
            rebuilt = JEM(create_backbone(spec.name, **spec.kwargs))
    except TypeError as exc:
        raise ValueError(f"backbone {spec.name!r} cannot take kwargs {spec.kwargs}: {exc}") from exc
    expected = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    given = {k: tuple(v.shape) for k, v in state.items()}
    if expected != given:
        missing = sorted(expected.keys() - given.keys())[:5]
        unexpected = sorted(given.keys() - expected.keys())[:5]
        wrong = sorted(k for k in expected.keys() & given.keys() if expected[k] != given[k])[:5]
        problem = f"missing {missing}, unexpected {unexpected}, wrong shapes {wrong}"
        raise IncompatibleWeights(f"saving {name}", problem)
    num_classes = getattr(model, "num_classes", rebuilt.num_classes)
    if len(draft.class_names) != num_classes:
        raise ValueError(
            f"class_names has {len(draft.class_names)} entries but the model has "
            f"{num_classes} classes"
        )


def tensor_filename(name: str) -> str:
    """ "training_state" or "training_state.safetensors" -> "training_state.safetensors"."""
    return validate_filename(name if name.endswith(_TENSORS) else name + _TENSORS)


def encode_files(
    name: str,
    model: nn.Module,
    draft: ManifestDraft,
    buffer: Mapping[str, Tensor] | None,
    tensors: Mapping[str, Mapping[str, Tensor]],
    files: Mapping[str, bytes],
) -> dict[str, bytes]:
    """Every file of a version but the manifest, checked and serialised (file name -> bytes)."""
    state = model.state_dict()
    check_rebuildable(name, draft, model, state)
    blobs = {WEIGHTS: tensors_to_bytes(state)}
    if buffer is not None:
        blobs[BUFFER] = tensors_to_bytes(buffer)
    extra = {tensor_filename(k): tensors_to_bytes(v) for k, v in tensors.items()}
    for filename, data in files.items():
        if validate_filename(filename).endswith(_TENSORS):
            raise ValueError(f"{filename}: pass tensors through tensors=, not files=")
        extra[filename] = bytes(data)
    for filename, data in extra.items():
        if filename in _RESERVED:
            raise ValueError(f"{filename} is reserved; use model= / buffer= for it")
        if filename in blobs:
            raise ValueError(f"{filename} is given twice")
        blobs[filename] = data
    return blobs
