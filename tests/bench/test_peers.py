"""`python -m bench --peers`: the answer check, the table, the peers' shared code, and a smoke run
with this service alone (CI never installs the peer frameworks: they are heavy)."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartParser

from bench.__main__ import main
from bench.loadgen import Body, LoadResult, closed_loop, merge, multipart_body, png_bytes
from bench.models import digit_images, locate_model
from bench.peers import common
from bench.peers import run as peers_run
from bench.peers.harness import compare
from bench.peers.run import BASELINE, SERVICE, SERVICE_BASE64, PeerPlan, Row
from bench.peers.table import PEER_NOTES, peers_markdown
from service import Settings, create_app
from training.data import Dataset, load_digits_dataset


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits_dataset(seed=0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _answer(label: int, confidence: float, energy: float) -> dict[str, Any]:
    top = [{"label": label, "probability": confidence}, {"label": (label + 1) % 10}]
    return {"label": label, "confidence": confidence, "energy": energy, "top_k": top}


def test_compare_accepts_float_noise_and_names_the_first_difference() -> None:
    ref = [_answer(3, 0.9, -5.0), _answer(7, 0.6, -2.0)]
    assert compare(ref, [_answer(3, 0.90000001, -5.0000001), _answer(7, 0.6, -2.0)]) == ""
    assert compare(ref, ref[:1]) == "1 answers for 2 images"
    assert "image 1: label 1 where the service says 7" in compare(
        ref, [ref[0], _answer(1, 0.6, -2)]
    )
    assert "image 0: energy" in compare(ref, [_answer(3, 0.9, -5.1), ref[1]])
    assert "image 0: confidence" in compare(ref, [_answer(3, 0.8, -5.0), ref[1]])


@pytest.mark.anyio
async def test_field_per_image_body_keeps_every_image_under_its_own_name(digits: Dataset) -> None:
    uploads = [png_bytes(a) for a in digit_images(digits, 3)]
    body = multipart_body(uploads, field_per_image=True)

    async def stream() -> Any:
        yield body.content

    form = await MultiPartParser(Headers({"content-type": body.content_type}), stream()).parse()
    files = list(form.multi_items())
    assert [name for name, _ in files] == ["files0", "files1", "files2"]
    assert all(isinstance(v, UploadFile) for _, v in files)
    assert [await v.read() for _, v in files] == uploads  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_peer_model_answers_like_the_service(
    digits: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What every peer's server runs must give the service's answers, or the comparison is void.
    source = locate_model(tmp_path / "missing", "digits-jem", tmp_path, digits, standin=True)
    monkeypatch.setenv("PEER_STORE", str(source.store))
    monkeypatch.setenv("PEER_REF", source.ref)
    uploads = [png_bytes(a) for a in digit_images(digits, 5)]
    peer = common.load_model().predict_files(uploads)
    app = create_app(Settings(models=[source.ref], model_store=source.store))  # type: ignore[call-arg]
    body = multipart_body(uploads)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _ in range(300):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await anyio.sleep(0.02)
            response = await client.post(
                "/v1/models/digits-jem/predict",
                content=body.content,
                headers={"content-type": body.content_type},
            )
    assert response.status_code == 200
    assert compare(response.json()["predictions"], peer) == ""


@pytest.mark.anyio
async def test_each_round_is_kept_beside_the_rows_total(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two rounds that differ (a slower server in round 2, more CPU in round 2) after an untimed
    # warm-up round: the row keeps the pooled total of the measured rounds as before, and each
    # one's own rate, tail and CPU per request in order.
    delays = iter([0.008, 0.001, 0.004])  # the warm-up round's, then the two measured
    cpu = iter([10.0, 10.1, 20.0, 20.3])  # tree CPU seconds read before and after each round
    results: list[LoadResult] = []

    async def fake_load(*args: Any, concurrency: int, **kwargs: Any) -> LoadResult:
        delay = next(delays)

        async def send() -> str:
            await anyio.sleep(delay)
            return "200"

        result = await closed_loop([send] * concurrency, 2, ok="200", duration_s=0.2, warmup_s=0)
        results.append(result)
        return result

    monkeypatch.setattr(peers_run, "run_load", fake_load)
    monkeypatch.setattr(peers_run, "tree_cpu_s", lambda pid: next(cpu))
    body = Body(b"", "application/octet-stream", 2, "multipart")
    target = peers_run._Target("server", "http://x", "/p", 1, {2: body}, 0.0)
    plan = PeerPlan(
        0.4, 0.0, rounds=2, batch_images=2, threads=1, seed=0, peers=(), warmup_rounds=1
    )
    out = await peers_run._interleave([target], (Row(True, 2),), plan)
    (row,) = out["server"]
    assert len(results) == 3
    del results[0]  # the warm-up round: in no figure
    pooled = merge(results, 2)
    assert row["requests_per_s"] == pooled.requests_per_s
    assert row["p99_ms"] == pooled.p99_ms
    sent = sum(r.sent for r in results)
    assert row["server_cpu_ms_per_request"] == round(400 / sent, 3)
    first, second = row["rounds"]
    assert [first["requests"], second["requests"]] == [r.requests for r in results]
    assert first["requests_per_s"] > second["requests_per_s"]
    assert first["p99_ms"] < second["p99_ms"]
    assert first["server_cpu_ms_per_request"] == round(100 / results[0].sent, 3)
    assert second["server_cpu_ms_per_request"] == round(300 / results[1].sent, 3)
    assert json.loads(json.dumps(row)) == row  # it goes into peers.json as is


def _keywords(module: Path, decorator: str) -> dict[str, str]:
    """The keyword arguments (as source text) of the `decorator` call on the module's classes:
    the peers' servers import their frameworks, which are not installed here."""
    tree = ast.parse(module.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for d in node.decorator_list:
                if isinstance(d, ast.Call) and ast.unparse(d.func) == decorator:
                    return {k.arg: ast.unparse(k.value) for k in d.keywords if k.arg}
    raise AssertionError(f"no @{decorator}(...) class in {module}")


def test_ray_serve_lets_a_full_batch_into_its_one_replica() -> None:
    # Ray Serve sends a replica at most max_ongoing_requests requests (default 5): below the
    # batch size, @serve.batch never forms a batch of 64 and the proxy queues and backs off
    # (Ray's own start-up warning; docs/benchmarks-peers.md, twelfth part)
    kw = _keywords(Path(common.__file__).with_name("rayserve_app.py"), "serve.deployment")
    assert kw["num_replicas"] == "1"
    assert kw["max_ongoing_requests"] == "MAX_BATCH"
    assert common.MAX_BATCH == 64


def test_bentoml_batches_up_to_64_images_with_a_latency_budget_no_row_reaches() -> None:
    kw = _keywords(Path(common.__file__).with_name("bentoml_service.py"), "bentoml.service")
    assert kw == {"workers": "1"}
    tree = ast.parse(Path(common.__file__).with_name("bentoml_service.py").read_text())
    (api,) = [
        d
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        for d in node.decorator_list
        if isinstance(d, ast.Call) and ast.unparse(d.func) == "bentoml.api"
    ]
    kw = {k.arg: ast.unparse(k.value) for k in api.keywords if k.arg}
    assert kw == {"batchable": "True", "max_batch_size": "MAX_BATCH", "max_latency_ms": "10000"}


def _row(label: str, images: int, rate: float) -> dict[str, Any]:
    return {
        "row": label,
        "images": images,
        "requests_per_s": rate,
        "images_per_s": rate * images,
        "p99_ms": 10.0,
        "server_cpu_ms_per_request": 2.0,
    }


def test_table_gives_the_best_peer_and_the_ratio_per_row() -> None:
    results = {
        "servers": {
            SERVICE: [_row("a", 1, 200.0), _row("b", 1, 300.0), _row("c", 64, 50.0)],
            SERVICE_BASE64: [_row("a", 1, 900.0), _row("b", 1, 900.0), _row("c", 64, 90.0)],
            "LitServe": [_row("a", 1, 100.0), _row("b", 1, 400.0), _row("c", 64, 40.0)],
            "BentoML": [_row("a", 1, 160.0), _row("b", 1, 100.0), _row("c", 64, 10.0)],
        },
        "memory_mb": {n: {"idle": 1.0, "peak": 300.0} for n in (SERVICE, "LitServe", "BentoML")},
        "startup_s": {SERVICE: 2.0, "LitServe": 5.0, "BentoML": 9.0},
        "unavailable": {"TorchServe": "needs java on PATH"},
        "environment": {
            "plan": {"rounds": 3},
            "load_before": [1.0, 1.0, 1.0],
            "load_after": [2.0, 1.0, 1.0],
            "cpu_count": 2,
        },
    }
    table = peers_markdown(results)
    assert "| a | 200 (10.0) | BentoML 160 (10.0) | 1.25x |" in table
    assert "| b | 300 (10.0) | LitServe 400 (10.0) | 0.75x |" in table
    assert "| c | 3,200 img/s (10.0) | LitServe 2,560 img/s (10.0) | 1.25x |" in table
    assert "TorchServe: not measured: needs java on PATH" in table
    assert f"| | {SERVICE} | LitServe | BentoML |" in table  # memory: one column per process
    # BentoML's learned batching wait, carried from the heavier rows, is named under the table
    assert f"\nBentoML: {PEER_NOTES['BentoML']}" in table
    # a one-round run without warm-up (--quick): no round before, nothing carried, no note
    results["environment"]["plan"] = {"rounds": 1, "warmup_rounds": 0}
    assert "twelfth part" not in peers_markdown(results)
    assert table.count("twelfth part") == 1


def _measured_alongside(*names: str) -> dict[str, Any]:
    """Everything of a results dict but `servers`, for servers `names` (3 rounds, 2 cores)."""
    return {
        "memory_mb": {n: {"idle": 1.0, "peak": 300.0} for n in names},
        "startup_s": dict.fromkeys(names, 2.0),
        "unavailable": {},
        "environment": {
            "plan": {"rounds": 3},
            "load_before": [1.0, 1.0, 1.0],
            "load_after": [2.0, 1.0, 1.0],
            "cpu_count": 2,
        },
    }


def test_the_table_gives_the_c64_row_round_by_round_where_the_json_has_rounds() -> None:
    def with_rounds(label: str, rates: list[float]) -> dict[str, Any]:
        row = _row(label, 1, sum(rates) / len(rates))
        row["rounds"] = [{"requests_per_s": r, "server_cpu_ms_per_request": 100 / r} for r in rates]
        return row

    rows = [_row("a", 1, 1.0), _row("b", 1, 1.0)]
    results = {
        "servers": {
            SERVICE: [*rows, with_rounds("c=64", [1000.0, 1000.0, 1000.0])],
            SERVICE_BASE64: [*rows, with_rounds("c=64", [900.0, 900.0, 900.0])],
            "TorchServe": [*rows, with_rounds("c=64", [500.0, 1000.0, 2000.0])],
        },
        **_measured_alongside(SERVICE, "TorchServe"),
    }
    table = peers_markdown(results)
    assert "3 interleaved rounds; load average" in table
    assert "| c=64, by round: req/s (server CPU ms/request) | 1 | 2 | 3 |" in table
    assert "| TorchServe | 500 (0.20) | 1,000 (0.10) | 2,000 (0.05) |" in table
    assert f"| {SERVICE} | 1,000 (0.10) | 1,000 (0.10) | 1,000 (0.10) |" in table
    assert "twelfth part" not in table  # no BentoML, no note on its batching
    # results from before the rounds were kept: no such table
    for server in results["servers"].values():
        del server[2]["rounds"]
    results["environment"]["plan"]["warmup_rounds"] = 1
    table = peers_markdown(results)
    assert "by round" not in table
    assert "3 interleaved rounds after 1 untimed warm-up round(s); load average" in table


def test_a_baseline_checkout_is_compared_with_the_service_never_taken_for_a_peer() -> None:
    results = {
        "servers": {
            SERVICE: [_row("a", 1, 300.0), _row("b", 64, 50.0), _row("c", 1, 1.0)],
            SERVICE_BASE64: [_row("a", 1, 290.0), _row("b", 64, 60.0), _row("c", 1, 1.0)],
            BASELINE: [_row("a", 1, 600.0), _row("b", 64, 25.0), _row("c", 1, 1.0)],
            "LitServe": [_row("a", 1, 100.0), _row("b", 64, 40.0), _row("c", 1, 1.0)],
        },
        "memory_mb": {n: {"idle": 1.0, "peak": 300.0} for n in (SERVICE, BASELINE, "LitServe")},
        "startup_s": {SERVICE: 2.0, BASELINE: 2.5, "LitServe": 5.0},
        "unavailable": {},
        "environment": {
            "plan": {"rounds": 3, "baseline": "/tmp/before"},
            "load_before": [1.0, 1.0, 1.0],
            "load_after": [2.0, 1.0, 1.0],
            "cpu_count": 2,
        },
    }
    table = peers_markdown(results)
    assert "| a | 300 (10.0) | LitServe 100 (10.0) | 3.00x |" in table  # not the baseline's 600
    assert "| row | this service | baseline (/tmp/before) | ratio |" in table
    assert "| a | 300 (10.0) | 600 (10.0) | 0.50x |" in table
    assert "| b | 3,200 img/s (10.0) | 1,600 img/s (10.0) | 2.00x |" in table


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(300)
def test_peers_smoke_run_with_this_service_alone(tmp_path: Path) -> None:
    assert main(["--peers", "--quick", "--peer", "none", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "peers.json").read_text())
    assert set(results["servers"]) == {SERVICE, SERVICE_BASE64}
    rows = results["servers"][SERVICE] + results["servers"][SERVICE_BASE64]
    assert [r["concurrency"] for r in rows] == [1, 8, 64, 1, 8] * 2
    rounds = results["environment"]["plan"]["rounds"]
    for row in rows:
        assert row["errors"] == 0, row
        assert row["requests"] > 0, row
        assert math.isfinite(row["p99_ms"]), row
        # each round's own figures, besides the row's total; `--quick` runs one round, so that
        # round's figures are the total's
        assert len(row["rounds"]) == rounds == 1, row
        (only,) = row["rounds"]
        for key in ("requests", "errors", "requests_per_s", "images_per_s", "p50_ms", "p99_ms"):
            assert only[key] == row[key], (key, row)
        assert only["server_cpu_ms_per_request"] == row["server_cpu_ms_per_request"], row
    assert results["memory_mb"][SERVICE]["peak"] > 0
    assert results["unavailable"] == {}
    table = (tmp_path / "peers.md").read_text()
    assert table == peers_markdown(results)  # the table is a function of the JSON alone
    assert "(no peer measured)" in table
