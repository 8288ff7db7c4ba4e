"""Serving on a device (service/device.py), exercised on the CPU: `auto` resolves to the CPU
here, `cuda` is refused at startup, and a CUDA out-of-memory error raised from the model's
forward pass answers 503 with Retry-After while the model keeps serving."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch
from fastapi import FastAPI
from pydantic import ValidationError

from model_store import ModelStore
from service import create_app
from service.device import Placement, resolve_device
from service.errors import DeviceOutOfMemory
from service.predictor import Predictor
from service.sampling import GenerationLimits
from service.schemas import GenerateRequest
from tests.service.conftest import Digits, make_settings, png_bytes, serve, wait_ready
from tests.service.test_metrics import samples, value
from tests.service_process import REPO

LIMITS = GenerationLimits(max_samples=16, max_steps=100, max_step_size=5.0, max_noise_std=1.0)


def test_auto_resolves_to_the_cpu_without_a_gpu() -> None:
    assert not torch.cuda.is_available()  # tests/conftest.py hides GPUs unless asked
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    placement = Placement.resolve("auto", "fp32")
    assert placement.describe() == {"device": "cpu", "precision": "fp32"}
    assert placement.memory_allocated() is None


@pytest.mark.parametrize(
    ("device", "precision", "message"),
    [
        ("cuda", "fp32", "JEM_DEVICE='cuda' but no CUDA device is visible"),
        ("cuda:1", "fp32", "JEM_DEVICE='cuda:1' but no CUDA device is visible"),
        ("cpu", "bf16", "JEM_PRECISION=bf16 needs a CUDA device"),
        ("auto", "bf16", "JEM_PRECISION=bf16 needs a CUDA device"),
        ("mps", "fp32", "only auto, cpu, cuda and cuda:N"),
    ],
)
def test_a_device_that_is_not_here_is_a_startup_error(
    device: str, precision: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Placement.resolve(device, precision)


def test_settings_validate_the_device_and_precision(store_root: Path) -> None:
    with pytest.raises(ValidationError, match="device"):
        make_settings(store_root, device="gpu0")
    with pytest.raises(ValidationError, match="precision"):
        make_settings(store_root, precision="fp16")
    with pytest.raises(ValueError, match="no CUDA device is visible"):
        create_app(make_settings(store_root, device="cuda:0"))


def test_python_m_service_refuses_a_missing_gpu_in_one_line(store_root: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": "", "JEM_DEVICE": "cuda"}
    env["JEM_MODEL_STORE"] = str(store_root)
    proc = subprocess.run(
        [sys.executable, "-m", "service", "--port", "0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("python -m service: error: JEM_DEVICE='cuda'")


def test_explicit_cpu_placement_is_the_plain_cpu_path(store_root: Path, digits: Digits) -> None:
    loaded = ModelStore(store_root).load("served")
    default = Predictor(loaded)
    cpu = Predictor(loaded, Placement.resolve("cpu", "fp32"))
    x = digits.test_x[:8]
    assert cpu.placement.stack([x]) is x  # no copy on the CPU
    assert cpu.placement.to_device(x) is x
    a, b = default.classify_batch(x), cpu.classify_batch(x)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(default.grad_batch(x)["grad_norm"], cpu.grad_batch(x)["grad_norm"])
    params = cpu.resolve_generation(GenerateRequest(num_samples=3, steps=12, seed=5), LIMITS)
    deadline = time.monotonic() + 60
    assert torch.equal(
        default.generate(params, deadline=deadline).x, cpu.generate(params, deadline=deadline).x
    )


@pytest.mark.anyio
@pytest.mark.parametrize("device", ["cpu", "auto"])
async def test_model_info_and_metrics_name_the_device(store_root: Path, device: str) -> None:
    async with serve(make_settings(store_root, device=device)) as client:
        info = (await client.get("/v1/models/served")).json()
        assert (info["device"], info["precision"]) == ("cpu", "fp32")
        listed = (await client.get("/v1/models")).json()["models"]
        assert {m["device"] for m in listed} == {"cpu"}
        text = (await client.get("/metrics")).text
    s = samples(text)
    labels = {"model": "served", "device": "cpu", "precision": "fp32"}
    assert value(s, "jem_model_info", **labels) == 1
    # on the CPU the device-memory gauge has no series at all (not a misleading 0)
    assert not any(name == "jem_device_memory_bytes" for name, _ in s)
    assert "# TYPE jem_device_memory_bytes gauge" in text


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


class _OutOfMemoryOnce:
    """Wraps a backbone's forward: the next `n` calls raise torch.cuda.OutOfMemoryError."""

    def __init__(self, forward: object, n: int) -> None:
        self.forward, self.left = forward, n

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.left > 0:
            self.left -= 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        out: torch.Tensor = self.forward(x)  # type: ignore[operator]
        return out


@pytest.mark.anyio
async def test_device_out_of_memory_is_a_503_and_the_model_keeps_serving(
    store_root: Path, digits: Digits
) -> None:
    files = [("files", ("d.png", png_bytes(digits.test_u8[0]), "image/png"))]
    app = create_app(make_settings(store_root, device="cpu", retry_after_s=3))
    async with app.router.lifespan_context(app), _client(app) as client:
        await wait_ready(client)
        backbone = app.state.runtime.predictors["served"].model.backbone
        for path, body in [
            ("/v1/models/served/predict", {"files": files}),
            ("/v1/models/served/ood", {"files": files}),
            ("/v1/models/served/generate", {"json": {"num_samples": 2, "steps": 3, "seed": 1}}),
        ]:
            backbone.forward = _OutOfMemoryOnce(type(backbone).forward.__get__(backbone), 1)
            r = await client.post(path, **body)  # type: ignore[arg-type]
            assert r.status_code == 503, (path, r.text)
            assert r.headers["retry-after"] == "3"
            error = r.json()["error"]
            assert error["code"] == "device_out_of_memory"
            assert "ran out of memory on cpu" in error["message"]
            again = await client.post(path, **body)  # type: ignore[arg-type]
            assert again.status_code == 200, (path, again.text)
            del backbone.forward
        assert (await client.get("/readyz")).status_code == 200
        metrics = samples((await client.get("/metrics")).text)
    assert value(metrics, "jem_generation_requests_total", status="device_out_of_memory") == 1


def test_out_of_memory_guard_maps_only_out_of_memory() -> None:
    placement = Placement.resolve("cpu", "fp32", retry_after_s=7)
    with pytest.raises(DeviceOutOfMemory) as caught, placement.out_of_memory_guard():
        raise torch.OutOfMemoryError("out of memory")
    assert caught.value.retry_after_s == 7
    with pytest.raises(RuntimeError, match="other"), placement.out_of_memory_guard():
        raise RuntimeError("other")
