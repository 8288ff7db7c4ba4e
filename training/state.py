"""Everything a run needs to continue bit-exactly, as safetensors tensors plus a JSON document.

A training state holds the optimiser (tensors per parameter, hyper-parameters as JSON), the
scheduler, the replay buffer, every random number generator the loop draws from (torch's global
one, the run's own generators, numpy's and python's) and the step. No pickle anywhere: a
checkpoint is loaded with the same verified, safe readers the service uses.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "TrainingState",
    "optimizer_from_flat",
    "optimizer_to_flat",
    "rng_from_flat",
    "rng_to_flat",
]

STATE_TENSORS = "training_state"  # -> training_state.safetensors
STATE_JSON = "training_state.json"


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Optimiser state as ``optim.<param>.<key>`` tensors, the rest (groups, scalars) as JSON."""
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entries in sd["state"].items():
        for key, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(
    opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith("optim."):
            continue
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, entries in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(entries)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def rng_to_flat(generators: dict[str, torch.Generator]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Torch (global, CUDA and named generators), numpy and python RNG states."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    for name, gen in generators.items():
        tensors[f"rng.gen.{name}"] = gen.get_state()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    tensors["rng.numpy.keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, py_state, gauss = random.getstate()
    meta = {
        "numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached": cached},
        "python": {"version": version, "state": list(py_state), "gauss": gauss},
    }
    return tensors, meta


def rng_from_flat(
    generators: dict[str, torch.Generator], tensors: dict[str, Tensor], meta: dict[str, Any]
) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    for name, gen in generators.items():
        gen.set_state(tensors[f"rng.gen.{name}"])
    n = meta["numpy"]
    keys = tensors["rng.numpy.keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached"]))
    p = meta["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


@dataclass
class TrainingState:
    """The serialised form: ``tensors`` go to safetensors, ``meta`` to JSON."""

    tensors: dict[str, Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def files(self) -> tuple[dict[str, dict[str, Tensor]], dict[str, bytes]]:
        """The ``tensors=`` and ``files=`` arguments for ``ModelStore.save``."""
        blob = json.dumps(self.meta, sort_keys=True).encode()
        return {STATE_TENSORS: self.tensors}, {STATE_JSON: blob}
