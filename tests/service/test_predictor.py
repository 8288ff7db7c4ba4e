"""The Predictor alone (no HTTP): numbers match jem's, and it leaves the model untouched."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from jem.ood import grad_norm_score
from model_store import ModelStore
from service.errors import GenerationTimeout, InvalidParameters, NotReady
from service.predictor import Predictor
from service.sampling import GenerationLimits
from service.schemas import GenerateRequest
from tests.service.conftest import Digits

LIMITS = GenerationLimits(max_samples=16, max_steps=100, max_step_size=5.0, max_noise_std=1.0)


@pytest.fixture(scope="module")
def predictor(store_root: Path) -> Predictor:
    return Predictor(ModelStore(store_root).load("served"))


def test_classify_and_grad_match_jem(predictor: Predictor, digits: Digits) -> None:
    x = digits.test_x[:16]
    out = predictor.classify_batch(x)
    with torch.no_grad():
        logits = predictor.model(x)
    torch.testing.assert_close(out["probs"], torch.softmax(logits / predictor.temperature, 1))
    torch.testing.assert_close(out["energy"], -torch.logsumexp(logits, 1))
    grad = predictor.grad_batch(x)["grad_norm"]
    torch.testing.assert_close(grad, grad_norm_score(predictor.model, x))
    assert all(p.grad is None and not p.requires_grad for p in predictor.model.parameters())
    assert not predictor.model.training


def test_verdicts_follow_the_calibration(predictor: Predictor) -> None:
    cal = predictor.scores["energy"]
    above = predictor.verdict("energy", cal.quantiles[-1] + 1.0)
    below = predictor.verdict("energy", cal.quantiles[0] - 1.0)
    assert above.flagged is True
    assert above.percentile == 100.0
    assert below.flagged is False
    assert below.percentile == 0.0
    assert predictor.verdict("energy", cal.threshold + 1e-6).flagged is True
    assert predictor.verdict("energy", cal.threshold - 1e-6).flagged is False
    median = predictor.verdict("energy", cal.quantiles[50])
    assert median.percentile == pytest.approx(50.0, abs=1.0)


def test_generation_is_seeded_and_leaves_no_trace(predictor: Predictor) -> None:
    request = GenerateRequest(num_samples=4, label="2", steps=15, seed=7)
    params = predictor.resolve_generation(request, LIMITS)
    before = {k: v.clone() for k, v in predictor.model.state_dict().items()}
    a = predictor.generate(params, deadline=time.monotonic() + 60)
    b = predictor.generate(params, deadline=time.monotonic() + 60)
    assert torch.equal(a.x, b.x)
    assert [s.png_base64 for s in a.samples] == [s.png_base64 for s in b.samples]
    assert a.x.min() >= -1
    assert a.x.max() <= 1
    for k, v in predictor.model.state_dict().items():
        assert torch.equal(v, before[k])
    assert not predictor.model.training


def test_generation_limits_and_budget(predictor: Predictor) -> None:
    with pytest.raises(InvalidParameters, match="num_samples 17 > 16"):
        predictor.resolve_generation(GenerateRequest(num_samples=17), LIMITS)
    with pytest.raises(InvalidParameters, match="steps 101 > 100"):
        predictor.resolve_generation(GenerateRequest(steps=101), LIMITS)
    params = predictor.resolve_generation(GenerateRequest(num_samples=2, steps=100), LIMITS)
    steps: list[int] = []
    with pytest.raises(GenerationTimeout, match="after 0 of 100"):
        predictor.generate(params, deadline=time.monotonic() - 1, on_steps=steps.append)
    assert steps == []


def test_generation_stops_when_its_request_is_cancelled(predictor: Predictor) -> None:
    params = predictor.resolve_generation(GenerateRequest(num_samples=2, steps=100), LIMITS)
    stop = threading.Event()
    steps: list[int] = []

    def on_steps(n: int) -> None:
        steps.append(n)
        if sum(steps) == 30:
            stop.set()

    with pytest.raises(NotReady, match="after 30 of 100 SGLD steps: the request was cancelled"):
        predictor.generate(params, deadline=time.monotonic() + 60, on_steps=on_steps, stop=stop)
