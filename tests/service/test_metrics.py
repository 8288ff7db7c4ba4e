"""/metrics after traffic: the contract's series, with values that match what was sent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.metrics import Metrics
from service.tally import observe_many
from tests.service.conftest import Digits, make_settings, png_bytes, serve

pytestmark = pytest.mark.anyio

CONTRACT = {
    "jem_requests_total": "counter",
    "jem_request_duration_seconds": "histogram",
    "jem_queue_wait_seconds": "histogram",
    "jem_compute_seconds": "histogram",
    "jem_queue_depth": "gauge",
    "jem_queue_rejections_total": "counter",
    "jem_batch_size": "histogram",
    "jem_images_total": "counter",
    "jem_ood_checks_total": "counter",
    "jem_ood_flags_total": "counter",
    "jem_ood_score": "histogram",
    "jem_energy": "histogram",
    "jem_model_info": "gauge",
    "jem_model_ready": "gauge",
    "jem_generation_requests_total": "counter",
    "jem_sgld_steps_total": "counter",
    "jem_generation_duration_seconds": "histogram",
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(all_samples: dict, name: str, **labels: str) -> float:
    return sum(
        v
        for (n, ls), v in all_samples.items()
        if n == name and all(dict(ls).get(k) == want for k, want in labels.items())
    )


async def predict_one(client: httpx.AsyncClient, data: bytes) -> httpx.Response:
    return await client.post(
        "/v1/models/served/predict", files=[("files", ("d.png", data, "image/png"))]
    )


async def test_series_and_values_after_traffic(store_root: Path, digits: Digits) -> None:
    settings = make_settings(store_root, max_wait_ms=50.0, max_batch_size=32)
    async with serve(settings) as client:
        pngs = [png_bytes(im) for im in digits.test_u8[:24]]
        # concurrent single-image requests: the micro-batcher must put several in one pass
        responses = await asyncio.gather(*(predict_one(client, p) for p in pngs))
        assert all(r.status_code == 200 for r in responses)
        assert max(r.json()["timing"]["batch_size"] for r in responses) > 1
        files = [("files", (f"{i}.png", p, "image/png")) for i, p in enumerate(pngs[:3])]
        assert (await client.post("/v1/models/served/ood", files=files)).status_code == 200
        gen = await client.post(
            "/v1/models/served/generate", json={"num_samples": 2, "steps": 15, "seed": 1}
        )
        assert gen.status_code == 200
        assert (await client.get("/v1/models/nope")).status_code == 404
        families = {
            f.name: f.type
            for f in text_string_to_metric_families((await client.get("/metrics")).text)
        }
        text = (await client.get("/metrics")).text

    for name, kind in CONTRACT.items():
        family = name.removesuffix("_total") if kind == "counter" else name
        assert families.get(family) == kind, (name, families.get(family))
    s = samples(text)
    assert value(s, "jem_requests_total", endpoint="predict", model="served", status="200") == 24
    assert value(s, "jem_requests_total", endpoint="get_model", model="", status="404") == 1
    assert value(s, "jem_images_total", model="served") == 27
    assert value(s, "jem_energy_count", model="served") == 27
    assert value(s, "jem_ood_checks_total", model="served", score="energy") == 27
    assert value(s, "jem_ood_checks_total", model="served", score="grad_norm") == 3
    assert value(s, "jem_ood_score_count", model="served", score="max_softmax") == 3
    assert value(s, "jem_ood_flags_total", model="served", score="energy") <= 27
    assert value(s, "jem_ood_checks_total", model="served", score="combined") == 3  # /v1 ood
    # batches larger than one: fewer batches with <= 1 image than batches overall
    batches = value(s, "jem_batch_size_count", model="served")
    singles = value(s, "jem_batch_size_bucket", model="served", le="1.0")
    assert batches < 24, (batches, singles)
    assert singles < batches, (batches, singles)
    assert value(s, "jem_queue_wait_seconds_count", model="served") == 24 + 2  # per request
    assert value(s, "jem_compute_seconds_count", model="served", kind="grad") >= 1
    assert value(s, "jem_queue_depth", model="served") == 0
    assert value(s, "jem_model_ready", model="served") == 1
    assert value(s, "jem_model_info", model="served", version="1", backbone="digits_cnn") == 1
    assert value(s, "jem_generation_requests_total", model="served", status="ok") == 1
    assert value(s, "jem_sgld_steps_total", model="served") == 15
    assert value(s, "jem_generation_duration_seconds_count", model="served") == 1
    assert value(s, "jem_request_duration_seconds_count", model="served", endpoint="predict") == 24


def v2_body(u8: object, outputs: list[str]) -> dict[str, object]:
    import numpy as np

    images = np.asarray(u8, dtype=np.uint8)
    return {
        "inputs": [
            {
                "name": "pixels_uint8",
                "datatype": "UINT8",
                "shape": [len(images), 8, 8, 1],
                "data": images.reshape(-1).tolist(),
            }
        ],
        "outputs": [{"name": name} for name in outputs],
    }


OOD_SERIES = ("jem_ood_checks_total", "jem_ood_flags_total", "jem_ood_score_count")
SCORES = ("energy", "max_softmax", "grad_norm", "combined")


def ood_counts(text: str) -> dict[tuple[str, str], float]:
    s = samples(text)
    return {(n, sc): value(s, n, model="served", score=sc) for n in OOD_SERIES for sc in SCORES}


@pytest.mark.parametrize(
    ("outputs", "decided", "scored"),
    [
        (["label"], set(), set()),
        (["ood_max_softmax"], {"max_softmax"}, {"max_softmax"}),
        (["label", "ood_energy"], {"energy"}, {"energy"}),
        (["energy", "grad_norm"], set(), {"energy", "grad_norm"}),
        (["ood"], {"combined"}, set()),
        (
            ["ood_grad_norm", "ood", "max_softmax"],
            {"grad_norm", "combined"},
            {"grad_norm", "max_softmax"},
        ),
        ([], {"energy", "max_softmax"}, {"energy", "max_softmax"}),  # the default outputs
    ],
)
async def test_v2_infer_counts_the_ood_decisions_it_returns(
    store_root: Path, digits: Digits, outputs: list[str], decided: set[str], scored: set[str]
) -> None:
    """jem_ood_checks_total / flags count exactly the OOD decisions the answer holds (per
    score; the combined verdict `ood` as score="combined"), jem_ood_score the scores whose
    values or verdicts it holds."""
    n = 5
    async with serve(make_settings(store_root)) as client:
        before = ood_counts((await client.get("/metrics")).text)
        r = await client.post("/v2/models/served/infer", json=v2_body(digits.test_u8[:n], outputs))
        assert r.status_code == 200, r.text
        after = ood_counts((await client.get("/metrics")).text)
    flags = {o["name"]: o["data"] for o in r.json()["outputs"] if o["datatype"] == "BOOL"}
    for score in SCORES:
        output = "ood" if score == "combined" else f"ood_{score}"
        checks = after[("jem_ood_checks_total", score)] - before[("jem_ood_checks_total", score)]
        flagged = after[("jem_ood_flags_total", score)] - before[("jem_ood_flags_total", score)]
        observed = after[("jem_ood_score_count", score)] - before[("jem_ood_score_count", score)]
        assert checks == (n if score in decided else 0), (score, checks)
        assert flagged == (sum(flags[output]) if score in decided else 0), (score, flagged)
        assert observed == (n if score in scored else 0), (score, observed)


@pytest.mark.parametrize(
    "values",
    [
        [-5.3, -5.3, -4.9, 0.0, 0.01, 1000.0, 1e9, -1e9],
        [-200.0, -100.0, -0.1, 0.1, 0.3],  # on bucket bounds
        [float("inf"), float("-inf"), float("nan"), 2.5],
        [3.0],
        [],
    ],
)
def test_observe_many_counts_as_observe(values: list[float]) -> None:
    one_by_one, together = Metrics(), Metrics()
    child = one_by_one.energy.labels("m")
    for value in values:
        child.observe(value)
    observe_many(together.energy.labels("m"), values)

    def samples(metrics: Metrics) -> dict[tuple[str, str], float]:
        return {
            (s.name, s.labels.get("le", "")): s.value
            for family in metrics.registry.collect()
            if family.name == "jem_energy"
            for s in family.samples
        }

    expected, got = samples(one_by_one), samples(together)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        if key[0] == "jem_energy_sum":
            assert got[key] == pytest.approx(value, nan_ok=True), key  # up to float rounding
        else:
            assert got[key] == value, key  # every bucket and the count exactly


async def test_dashboard_counters_exist_at_zero_before_any_request(store_root: Path) -> None:
    """The counters the dashboard shows or divides by read 0 for every served model from the
    start (a panel shows 0, not "No data"); OOD ones per calibrated score, and only those."""
    async with serve(make_settings(store_root)) as client:
        s = samples((await client.get("/metrics")).text)
    keys = {(name, dict(labels).get("model"), dict(labels).get("score")) for name, labels in s}
    for model in ("served", "plain"):
        for name in (
            "jem_queue_rejections_total",
            "jem_images_total",
            "jem_sgld_steps_total",
            "jem_generation_requests_total",
        ):
            assert (name, model, None) in keys, (name, model)
            assert value(s, name, model=model) == 0
    for score in ("energy", "grad_norm", "max_softmax", "combined"):
        for name in ("jem_ood_checks_total", "jem_ood_flags_total"):
            assert (name, "served", score) in keys, (name, score)
            assert value(s, name, model="served", score=score) == 0
            assert (name, "plain", score) not in keys  # no calibration: no OOD decisions
