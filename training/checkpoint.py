"""Writing runs into the model store: checkpoints for resume, the final version, pruning."""

from __future__ import annotations

import json
import logging
from typing import Any

from torch import Tensor

from jem import JEM
from model_store import ManifestDraft, ModelRef, ModelStore, Sampling, StoreError
from training.config import TrainConfig
from training.data import Dataset
from training.state import STATE_JSON, STATE_TENSORS, TrainingState

__all__ = ["ResumeError", "load_training_state", "manifest_draft", "prune_checkpoints"]

log = logging.getLogger("training")


class ResumeError(RuntimeError):
    """The reference given to --resume cannot be resumed from."""


def manifest_draft(
    *,
    stage: str,
    config: TrainConfig,
    data: Dataset,
    backbone: tuple[str, dict[str, Any]],
    training: dict[str, Any],
    metrics: dict[str, Any] | None = None,
) -> ManifestDraft:
    lo, hi = data.spec.value_range
    return ManifestDraft.model_validate(
        {
            "stage": stage,
            "backbone": {"name": backbone[0], "kwargs": backbone[1]},
            "input_spec": data.spec.to_dict(),
            "class_names": data.class_names,
            "training": {"config": config.to_dict(), "seed": config.seed, **training},
            "metrics": metrics or {},
            "sampling": Sampling(
                steps=config.sample_steps,
                step_size=config.sgld_step_size,
                noise_std=config.sgld_noise,
                clamp=(lo, hi) if config.sgld_clamp else None,
                init=config.buffer_init,
            ),
        }
    )


def save_version(
    store: ModelStore,
    name: str,
    model: JEM,
    draft: ManifestDraft,
    *,
    buffer: dict[str, Tensor] | None,
    state: TrainingState | None = None,
    files: dict[str, bytes] | None = None,
) -> ModelRef:
    tensors: dict[str, dict[str, Tensor]] = {}
    extra = dict(files or {})
    if state is not None:
        state_tensors, state_files = state.files()
        tensors.update(state_tensors)
        extra.update(state_files)
    # weights are saved from CPU copies so a CUDA run writes the same files as a CPU run
    cpu_model = model if next(model.parameters()).device.type == "cpu" else _cpu_copy(model)
    return store.save(name, cpu_model, draft, buffer=buffer, tensors=tensors, files=extra)


def _cpu_copy(model: JEM) -> JEM:
    import copy

    clone = copy.deepcopy(model)
    return clone.to("cpu")


def run_checkpoints(store: ModelStore, name: str, run_id: str) -> list[int]:
    """Versions of ``name`` with stage "checkpoint" written by run ``run_id``, oldest first."""
    try:
        versions = store.list_versions(name)
    except StoreError:
        return []
    found = []
    for version in versions:
        try:
            manifest = store.manifest(ModelRef(name, version))
        except StoreError:
            continue
        if manifest.stage == "checkpoint" and manifest.training.get("run_id") == run_id:
            found.append(version)
    return found


def prune_checkpoints(store: ModelStore, name: str, run_id: str, keep: int) -> list[int]:
    """Delete all but the newest ``keep`` checkpoint versions of this run; returns the deleted."""
    versions = run_checkpoints(store, name, run_id)
    doomed = versions[: max(0, len(versions) - keep)]
    for version in doomed:
        store.delete(f"{name}:{version}", force=True)
        log.info("deleted checkpoint %s:%d", name, version)
    return doomed


def load_training_state(
    store: ModelStore, ref: str
) -> tuple[ModelRef, TrainConfig, dict[str, Any], dict[str, Tensor], dict[str, Tensor]]:
    """(ref, config, meta, state tensors, weights) of a checkpoint written by this package."""
    try:
        mref = store.resolve(ref)
        manifest = store.verify(mref)
    except StoreError as exc:
        raise ResumeError(f"cannot resume from {ref!r}: {exc}") from exc
    if f"{STATE_TENSORS}.safetensors" not in manifest.files or STATE_JSON not in manifest.files:
        raise ResumeError(
            f"{mref} has no training state (stage {manifest.stage!r}); resume from a checkpoint "
            f"version: {', '.join(str(v) for v in run_checkpoints_any(store, mref.name)) or 'none'}"
        )
    config = TrainConfig.from_dict(dict(manifest.training["config"]))  # type: ignore[arg-type]
    meta = json.loads(store.read_file(mref, STATE_JSON))
    tensors = store.read_tensors(mref, STATE_TENSORS)
    loaded = store.load(mref, verify=False)
    weights = {k: v.detach().clone() for k, v in loaded.model.state_dict().items()}
    return mref, config, meta, tensors, weights


def run_checkpoints_any(store: ModelStore, name: str) -> list[int]:
    out = []
    for version in store.list_versions(name):
        if store.manifest(ModelRef(name, version)).stage == "checkpoint":
            out.append(version)
    return out


def state_to_cpu(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
