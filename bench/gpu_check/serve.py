"""The trained WRN served by `python -m service` (uvicorn) on the device, measured over HTTP,
and the raw model measured in this process on the same device, one after the other."""

from __future__ import annotations

import asyncio
import contextlib
import io
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from bench.loadgen import Body, run_load
from bench.servers import serve
from jem import SGLDConfig, sgld_sample, uint8_to_tensor
from jem.ood import grad_norm_score
from model_store import ModelStore

from .plan import Plan

__all__ = ["measure_raw", "measure_served"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _times(fn: Callable[[], object], device: torch.device, repeats: int) -> list[float]:
    """Wall seconds of each of `repeats` calls (after 3 warm-up calls), synchronised."""
    for _ in range(3):
        fn()
    _sync(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out


def measure_raw(store: ModelStore, ref: str, plan: Plan, images: np.ndarray) -> dict[str, Any]:
    """Forward (batch 1 and 64), grad-norm (64) and the bare SGLD sampler, no service."""
    device = torch.device(plan.device)
    loaded = store.load(ref, device=device)
    model = loaded.model.eval().requires_grad_(False)
    spec = loaded.input_spec
    x64 = uint8_to_tensor(images[:64], spec).to(device)
    x1 = x64[:1].clone()
    n = x64.shape[0]

    def forward(x: torch.Tensor) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode(), _autocast(device, plan.precision):
                return model(x)

        return run

    def grad() -> object:
        with _autocast(device, plan.precision):
            return grad_norm_score(model, x64)

    sampling = loaded.manifest.sampling
    config = SGLDConfig(
        plan.generation_steps,
        sampling.step_size if sampling else 1.0,
        sampling.noise_std if sampling else 0.01,
        spec.value_range,
    )
    g = torch.Generator(device).manual_seed(0)

    def sampler() -> object:
        low, high = spec.value_range
        x0 = low + (high - low) * torch.rand((plan.generation_samples, *spec.shape), device=device)
        with _autocast(device, plan.precision):
            x = sgld_sample(model, x0, config, generator=g)
        with torch.inference_mode(), _autocast(device, plan.precision):
            return model(x).float().softmax(-1).cpu(), x.cpu()

    f1 = _times(forward(x1), device, plan.raw_repeats)
    f64 = _times(forward(x64), device, plan.raw_repeats)
    g64 = _times(grad, device, max(1, plan.raw_repeats // 5))
    gen = _times(sampler, device, plan.generation_repeats)
    return {
        "forward_1_p50_ms": round(statistics.median(f1) * 1000, 3),
        "forward_64_images_per_s": round(n / statistics.median(f64), 1),
        "grad_norm_64_images_per_s": round(n / statistics.median(g64), 1),
        "sampler_s": round(statistics.median(gen), 4),
    }


def _npy(images: np.ndarray) -> Body:
    buffer = io.BytesIO()
    np.save(buffer, images.transpose(0, 3, 1, 2))  # [N, C, H, W] uint8
    return Body(buffer.getvalue(), "application/x-npy", int(images.shape[0]), "npy")


@contextlib.contextmanager
def _server(store_root: Path, model: str, plan: Plan, log_dir: Path) -> Iterator[str]:
    env = {
        "JEM_MODEL_STORE": str(store_root),
        "JEM_MODELS": model,
        "JEM_DEVICE": plan.device,
        "JEM_PRECISION": plan.precision,
        "JEM_MAX_BATCH_SIZE": "64",
        "JEM_GRAD_MAX_BATCH_SIZE": "64",
        "JEM_GENERATION_TIME_BUDGET_S": "120",
        "JEM_REQUEST_TIMEOUT_S": "60",
    }
    with serve("service", env, log_dir) as server:
        yield server.url


def measure_served(
    store_root: Path, model: str, plan: Plan, images: np.ndarray, log_dir: Path
) -> dict[str, Any]:
    one, many = _npy(images[:1]), _npy(images[:64])
    out: dict[str, Any] = {}
    with _server(store_root, model, plan, log_dir) as url, httpx.Client(base_url=url) as client:
        info = client.get(f"/v1/models/{model}").json()
        out["served_on"] = {"device": info["device"], "precision": info["precision"]}
        headers = {"content-type": one.content_type}
        path = f"/v1/models/{model}/predict"
        for _ in range(5):
            client.post(path, content=one.content, headers=headers).raise_for_status()
        single = []
        for _ in range(plan.single_requests):
            t0 = time.perf_counter()
            client.post(path, content=one.content, headers=headers).raise_for_status()
            single.append(time.perf_counter() - t0)
        out["predict_1_p50_ms"] = round(statistics.median(single) * 1000, 3)
        for name, route in [("predict_64", "predict"), ("ood_64", "ood")]:
            for concurrency in (1, 4):
                r = asyncio.run(
                    run_load(
                        url,
                        f"/v1/models/{model}/{route}",
                        many,
                        concurrency=concurrency,
                        duration_s=plan.load_s,
                        warmup_s=min(1.0, plan.load_s),
                    )
                )
                out[f"{name}_c{concurrency}"] = r.to_dict()
        body = {"num_samples": plan.generation_samples, "steps": plan.generation_steps, "seed": 0}
        gen = []
        client.post(f"/v1/models/{model}/generate", json=body, timeout=300).raise_for_status()
        for _ in range(plan.generation_repeats):
            t0 = time.perf_counter()
            r = client.post(f"/v1/models/{model}/generate", json=body, timeout=300)
            r.raise_for_status()
            gen.append(time.perf_counter() - t0)
        out["generate_s"] = round(statistics.median(gen), 4)
        metrics = client.get("/metrics").text
        out["device_memory_bytes"] = _gauge(metrics, "jem_device_memory_bytes")
    return out


def _gauge(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None
