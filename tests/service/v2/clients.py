"""What the tritonclient tests share: keys, every output, inputs, and /v1's answer to
compare with."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import tritonclient.http as th

from tests.service.conftest import png_bytes
from tests.service_process import Server

KEY = {"Authorization": "Bearer k1"}  # tritonclient.http adds to the dict it is given: copy
GRPC_KEY = {"authorization": "Bearer k1"}
EVERY_OUTPUT = [
    "logits", "probabilities", "label", "class_name", "energy", "max_softmax", "grad_norm",
    "ood_energy", "ood_max_softmax", "ood_grad_norm", "ood",
]  # fmt: skip


def grpc_url(server: Server) -> str:
    """host:port of the gRPC service, as its startup log line says."""
    return next(
        line.split('"address": "')[1].split('"')[0]
        for line in server.logs().splitlines()
        if "gRPC listening" in line
    )


def inputs_for(module: object, u8: np.ndarray, *, binary: bool) -> dict[str, object]:
    """The same images as each of the three input tensors (`module`: tritonclient.http/grpc)."""
    pngs = [png_bytes(a) for a in u8]
    blobs = pngs if binary else [base64.b64encode(b) for b in pngs]
    arrays = {
        "pixels": ((u8[:, None] / 127.5 - 1).astype(np.float32), "FP32"),
        "pixels_uint8": (u8[..., None], "UINT8"),
        "images": (np.array(blobs, dtype=object), "BYTES"),
    }
    out = {}
    for name, (array, datatype) in arrays.items():
        tensor = module.InferInput(name, list(array.shape), datatype)  # type: ignore[attr-defined]
        if module is th:
            tensor.set_data_from_numpy(array, binary_data=binary)
        else:
            tensor.set_data_from_numpy(array)
        out[name] = tensor
    return out


def v1_predictions(server: Server, u8: np.ndarray) -> tuple[list[int], np.ndarray]:
    files = [("files", (f"{i}.png", png_bytes(a))) for i, a in enumerate(u8)]
    r = httpx.post(
        f"{server.url}/v1/models/served/predict", files=files, headers=dict(KEY), timeout=60
    )
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    return [p["label"] for p in predictions], np.array([p["confidence"] for p in predictions])


def check_outputs(result: object, labels: list[int], confidence: np.ndarray) -> None:
    n = len(labels)
    got = result.as_numpy("label")  # type: ignore[attr-defined]
    assert got.tolist() == labels
    probs = result.as_numpy("probabilities")  # type: ignore[attr-defined]
    np.testing.assert_allclose(probs[np.arange(n), labels], confidence, rtol=1e-5)
