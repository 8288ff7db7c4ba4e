"""Serving on a CUDA device (marked `cuda`: skipped without one; `make gpu-check` runs them
with CUDA_VISIBLE_DEVICES set). The references are the same Predictor on the CPU."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from model_store import ModelStore
from service.device import Placement
from service.predictor import Predictor
from service.sampling import GenerationLimits
from service.schemas import GenerateRequest
from tests.service.conftest import Digits

pytestmark = pytest.mark.cuda

LIMITS = GenerationLimits(max_samples=64, max_steps=200, max_step_size=5.0, max_noise_std=1.0)
GREY_LEVEL = 2.0 / 255.0  # one uint8 step in the [-1, 1] value range


def _predictors(store_root: Path, precision: str) -> tuple[Predictor, Predictor]:
    store = ModelStore(store_root)
    cpu = Predictor(store.load("served"))
    placement = Placement.resolve("cuda", precision)
    return cpu, Predictor(store.load("served", device=placement.device), placement)


@pytest.mark.parametrize(("precision", "atol"), [("fp32", 1e-4), ("bf16", 3e-2)])
def test_served_outputs_match_the_cpu(
    store_root: Path, digits: Digits, precision: str, atol: float
) -> None:
    cpu, gpu = _predictors(store_root, precision)
    x = digits.test_x[:64]
    a, b = cpu.classify_batch(x), gpu.classify_batch(gpu.placement.stack([x[:10], x[10:]]))
    for key in a:
        assert b[key].device.type == "cpu"
        assert b[key].dtype == torch.float32
        torch.testing.assert_close(
            b[key], a[key], atol=atol * max(1.0, a[key].abs().max().item()), rtol=0
        )
    ga, gb = cpu.grad_batch(x)["grad_norm"], gpu.grad_batch(x)["grad_norm"]
    torch.testing.assert_close(gb, ga, rtol=10 * atol, atol=atol)
    assert gpu.placement.memory_allocated() > 0
    assert gpu.info(ready=True).device == "cuda:0"


def test_generation_on_cuda_is_seeded_within_one_grey_level(store_root: Path) -> None:
    _, gpu = _predictors(store_root, "fp32")
    params = gpu.resolve_generation(GenerateRequest(num_samples=64, steps=100, seed=3), LIMITS)
    a = gpu.generate(params, deadline=time.monotonic() + 60)
    b = gpu.generate(params, deadline=time.monotonic() + 60)
    assert a.x.device.type == "cpu"
    assert (a.x - b.x).abs().max().item() <= GREY_LEVEL
