"""The benchmark harness: its yardsticks are right, and a quick run goes through end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pytest
import torch
from tritonclient.grpc import service_pb2

from bench.__main__ import main
from bench.loadgen import multipart_body, png_bytes
from bench.models import digit_images, locate_model
from bench.naive_app import create_bench_app
from bench.profile import summarise
from bench.reference_sgld import reference_sgld
from bench.report import markdown
from bench.targets import check_targets
from bench.v2load import OUTPUTS, grpc_body, v2_rest_body
from jem import JEM, SGLDConfig, create_backbone, sgld_sample
from service import Settings
from service.v2.tensors import bytes_elements
from tests.service.conftest import wait_ready
from training.data import Dataset, load_digits_dataset


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits_dataset(seed=0)


def test_reference_loop_computes_the_same_chain_as_the_sampler() -> None:
    # The timing comparison is fair only if both loops do the same math on the same noise.
    torch.manual_seed(0)
    model = JEM(create_backbone("digits_cnn", width=8)).eval()
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    config = SGLDConfig(steps=5, step_size=0.5, noise_std=0.01, clamp=None)
    ours = sgld_sample(model, x0, config, generator=torch.Generator().manual_seed(1))
    ref_model = JEM(create_backbone("digits_cnn", width=8))
    ref_model.load_state_dict(model.state_dict())
    theirs = reference_sgld(ref_model, x0, 5, 0.5, 0.01, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert ref_model.training  # the official habit it mirrors: left in train mode
    assert not model.training


@pytest.mark.anyio
async def test_bench_app_endpoints_answer_like_the_service(digits: Dataset, tmp_path: Path) -> None:
    source = locate_model(tmp_path / "missing", "digits-jem", tmp_path, digits, standin=True)
    app = create_bench_app(Settings(models=[source.ref], model_store=source.store))  # type: ignore[call-arg]
    body = multipart_body([png_bytes(a) for a in digit_images(digits, 3)])
    headers = {"content-type": body.content_type}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await wait_ready(client)
            noop = await client.post(
                "/bench/noop/digits-jem", content=body.content, headers=headers
            )
            decode = await client.post(
                "/bench/decode/digits-jem", content=body.content, headers=headers
            )
            naive = await client.post(
                "/bench/naive/digits-jem/predict", content=body.content, headers=headers
            )
            real = await client.post(
                "/v1/models/digits-jem/predict", content=body.content, headers=headers
            )
    assert noop.json() == {"images": 3}
    assert decode.json() == {"images": 3}
    assert real.status_code == 200
    ours = [p["label"] for p in naive.json()["predictions"]]
    assert ours == [p["label"] for p in real.json()["predictions"]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(300)
def test_quick_run_writes_results_and_checks_every_target(tmp_path: Path) -> None:
    assert main(["--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "latest.json").read_text())
    assert results["quick"] is True
    assert results["seed"] == 0
    assert results["environment"]["cpu_count"] >= 1
    assert results["environment"]["git_dirty"] in (True, False, None)
    rows = results["serving"]["rows"]
    assert {r["server"] for r in rows} == {"batched", "batched-nowait", "unbatched", "bench-app"}
    assert {r["body"] for r in rows} == {
        "multipart", "pixels", "npy", "v2-png", "v2-uint8", "grpc-png", "grpc-uint8",
    }  # fmt: skip
    for row in rows:
        assert row["errors"] == 0, row
        assert row["requests"] > 0, row
        assert math.isfinite(row["p99_ms"]), row
    assert results["serving"]["memory"]["batched"]["peak_mb"] > 0
    assert results["samplers"]["bare_steps_per_s"]["per_s"] > 0
    assert set(results["training"]["seconds_per_iteration"]) == {"0", "5"}
    names = {t["name"] for t in results["targets"]}
    assert len(names) == 7
    assert all(t["passed"] in (True, False) for t in results["targets"])
    table = (tmp_path / "latest.md").read_text()
    assert "| target | goal | measured | verdict |" in table
    # the table is a function of the JSON alone
    assert markdown(results, check_targets(results)) == table


def test_profile_summary_counts_each_function_once_per_stack() -> None:
    raw = (
        "MainThread;main (/x/service/app.py:3);main (/x/service/app.py:9);leaf (/y/lib/io.py:1) 3\n"
        "Worker;run (threading.py:12) 1\n"
    )
    text = summarise(raw, top=5)
    assert text.splitlines()[0] == "4 samples"
    assert " 75.0%  main (service/app.py)" in text  # recursion is not double-counted
    assert " 25.0%  run (threading.py)" in text


@pytest.mark.anyio
async def test_v2_bench_bodies_are_what_the_service_accepts(
    digits: Dataset, tmp_path: Path
) -> None:
    """The v2 rows' bodies: the REST one answered 200 in-process; the gRPC one a well-formed
    ModelInferRequest holding the same images (the quick run above sends it to a real server)."""
    source = locate_model(tmp_path / "missing", "digits-jem", tmp_path, digits, standin=True)
    arrays = digit_images(digits, 3)
    app = create_bench_app(Settings(models=[source.ref], model_store=source.store))  # type: ignore[call-arg]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await wait_ready(client)
            for encoding in ("png", "uint8"):
                body = v2_rest_body(arrays, encoding)
                r = await client.post(
                    "/v2/models/digits-jem/infer", content=body.content, headers=dict(body.headers)
                )
                assert r.status_code == 200, r.text
    request = service_pb2.ModelInferRequest.FromString(grpc_body("m", arrays, "png").content)
    assert [o.name for o in request.outputs] == list(OUTPUTS)
    assert request.inputs[0].name == "images"
    files = bytes_elements("images", request.raw_input_contents[0], 3)
    assert all(f.startswith(b"\x89PNG") for f in files)
