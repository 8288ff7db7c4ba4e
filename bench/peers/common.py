"""What every peer server does, written once: the same model, decode and answer as the service.

Runs inside the peers' venv (`.venv-peers`), with this repository on `sys.path` for `jem` and
`model_store` only (torch, numpy, Pillow, pydantic, safetensors): never `service`, whose FastAPI
and uvicorn pins would fight the frameworks'. Each peer's server module wraps these three steps
in that framework's own idiom (its handler class, its batching decorator, its config).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from jem import InputSpec, energy_from_logits, uint8_to_tensor
from jem.imaging import to_pixels
from model_store import ModelStore

__all__ = ["MAX_BATCH", "MAX_WAIT_MS", "TOP_K", "Model", "load_model", "split", "stack"]

MAX_BATCH = 64  # batch size: requests (LitServe, Ray Serve, TorchServe), images (BentoML)
MAX_WAIT_MS = 5.0
TOP_K = 3


@dataclass
class Model:
    """A served model: eval mode, frozen, torch threads as the run asks (default 1)."""

    net: torch.nn.Module
    spec: InputSpec
    temperature: float
    class_names: list[str]

    def decode(self, data: bytes) -> torch.Tensor:
        """One uploaded image (PNG, JPEG, ...) -> (C, H, W) float in the model's input spec."""
        image = Image.open(io.BytesIO(data))
        image.load()
        return uint8_to_tensor(to_pixels(image, self.spec), self.spec)[0]

    def predict(self, x: torch.Tensor) -> list[dict[str, Any]]:
        """(B, C, H, W) -> per image: label, class name, calibrated confidence, top-3, energy."""
        with torch.inference_mode():
            logits = self.net(x)
            probs = torch.softmax(logits / self.temperature, dim=-1)
            top_p, top_i = probs.topk(TOP_K, dim=-1)
            energy = energy_from_logits(logits)
        names = self.class_names
        return [
            {
                "label": i[0],
                "class_name": names[i[0]],
                "confidence": p[0],
                "top_k": [
                    {"label": j, "class_name": names[j], "probability": q}
                    for j, q in zip(i, p, strict=True)
                ],
                "energy": e,
            }
            for i, p, e in zip(top_i.tolist(), top_p.tolist(), energy.tolist(), strict=True)
        ]

    def predict_files(self, files: list[bytes]) -> list[dict[str, Any]]:
        """Decode and predict one request's images (no batching across requests)."""
        return self.predict(torch.stack([self.decode(f) for f in files]))


def load_model() -> Model:
    """The model named by PEER_STORE and PEER_REF (set by the harness), torch threads from
    PEER_THREADS (default 1)."""
    torch.set_num_threads(int(os.environ.get("PEER_THREADS", "1")))
    loaded = ModelStore(os.environ["PEER_STORE"]).load(os.environ["PEER_REF"])
    manifest = loaded.manifest
    net = loaded.model.eval().requires_grad_(False)
    temperature = float(manifest.calibration.temperature) if manifest.calibration else 1.0
    model = Model(net, loaded.input_spec, temperature, list(manifest.class_names))
    model.predict(torch.zeros((2, *model.spec.shape)))  # warm-up
    return model


def split(outputs: list[dict[str, Any]], sizes: list[int]) -> list[list[dict[str, Any]]]:
    """A batch's per-image answers back to the requests of `sizes` images each."""
    out, start = [], 0
    for n in sizes:
        out.append(outputs[start : start + n])
        start += n
    return out


def stack(batches: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """Several requests' (n_i, C, H, W) tensors -> one batch and the sizes to split it by."""
    return torch.cat(batches), [int(b.shape[0]) for b in batches]
