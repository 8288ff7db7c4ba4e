"""The service as users run it: `python -m service` in its own process on a free local port."""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.service._metrics import requests_total, two_workers
from tests.service.conftest import Digits, png_bytes
from tests.service_process import Server, run_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(
    store_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """One server for the tests that only send requests; the log is read after it stops."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    with run_service(store_root, log) as server:
        yield server.url, server.proc, log


def upload(images: list[bytes], ext: str = "png") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"{i}.{ext}", b, f"image/{ext}")) for i, b in enumerate(images)]


def test_real_server_end_to_end(
    server: tuple[str, subprocess.Popen[bytes], Path], digits: Digits
) -> None:
    url, proc, log = server
    with httpx.Client(base_url=url, timeout=30) as c:
        n = 64
        for ext, fmt, min_acc in (("png", "PNG", 0.9), ("jpeg", "JPEG", 0.85)):
            blobs = [
                png_bytes(im, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
                for im in digits.test_u8[:n]
            ]
            r = c.post("/v1/models/served/predict", files=upload(blobs, ext))
            assert r.status_code == 200, r.text
            labels = [p["label"] for p in r.json()["predictions"]]
            acc = (
                sum(int(a == b) for a, b in zip(labels, digits.test_y[:n].tolist(), strict=True))
                / n
            )
            assert acc >= min_acc, (fmt, acc)
        bad = c.post("/v1/models/served/predict", files=upload([b"not an image"]))
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "not_an_image"
        huge = c.post(
            "/v1/models/served/predict",
            content=b"0" * (9 * 1024 * 1024),
            headers={"content-type": "application/json"},
        )
        assert huge.status_code == 413
        r = c.get("/readyz", headers={"X-Request-ID": "trace-me-1"})
        assert r.status_code == 200
        assert r.headers["x-request-id"] == "trace-me-1"
        assert proc.poll() is None
        assert c.get("/healthz").status_code == 200
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    access = [r for r in records if r.get("logger") == "service.access"]
    assert any(r.get("request_id") == "trace-me-1" and r["status"] == 200 for r in access)
    assert any(r.get("model") == "served" and r["status"] == 422 for r in access)
    assert all({"ts", "level", "latency_ms", "path"} <= set(r) for r in access)


def _generate_across_sigterm(server: Server, body: dict[str, int]) -> httpx.Response:
    """POST `body` to /generate, send SIGTERM 0.5 s later, and return the answer."""
    result: dict[str, httpx.Response] = {}

    def slow() -> None:
        url = f"{server.url}/v1/models/served/generate"
        result["r"] = httpx.post(url, json=body, timeout=60)

    worker = threading.Thread(target=slow)
    worker.start()
    time.sleep(0.5)
    server.proc.send_signal(signal.SIGTERM)
    worker.join(timeout=60)
    return result["r"]


def test_graceful_shutdown_finishes_in_flight_requests(store_root: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with run_service(store_root, log) as server:
        r = _generate_across_sigterm(server, {"num_samples": 32, "steps": 300, "seed": 0})
        assert server.proc.wait(timeout=60) in (0, -signal.SIGTERM)
    assert r.status_code == 200
    assert len(r.json()["samples"]) == 32
    # uvicorn re-raises the SIGTERM after its graceful shutdown (exit -15 is clean); the
    # lifespan's drain ran: "stopped" is logged after it
    assert '"msg": "stopped"' in log.read_text()


def test_a_request_past_the_graceful_shutdown_time_gets_503_json(
    store_root: Path, tmp_path: Path
) -> None:
    # a generation may run longer (JEM_GENERATION_TIME_BUDGET_S, 60 s) than the drain (1 s
    # here): uvicorn cancels it, and the client must get the API's 503, not a plain-text 500
    log = tmp_path / "server.log"
    with run_service(
        store_root, log, JEM_GRACEFUL_SHUTDOWN_S="1", JEM_GENERATION_MAX_STEPS="20000"
    ) as server:
        r = _generate_across_sigterm(server, {"num_samples": 64, "steps": 20000, "seed": 0})
        # the generation's thread stops too: not at its 60 s budget (the interpreter waits for it)
        assert server.proc.wait(timeout=20) == 0
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "not_ready"
    assert "JEM_GRACEFUL_SHUTDOWN_S" in r.json()["error"]["message"]
    assert r.headers["retry-after"] == "1"
    assert r.headers["x-request-id"]
    text = log.read_text()
    assert "Exception in ASGI application" not in text
    access = [json.loads(line) for line in text.splitlines() if '"service.access"' in line]
    assert any(a.get("endpoint") == "generate" and a["status"] == 503 for a in access)


def test_workers_share_metrics(store_root: Path, digits: Digits, tmp_path: Path) -> None:
    with two_workers(store_root, tmp_path) as (server, metrics_dir):
        url = server.url
        blob = upload([png_bytes(digits.test_u8[0])])
        for _ in range(20):  # a new connection each: the kernel spreads them over the workers
            assert httpx.post(f"{url}/v1/models/served/predict", files=blob).status_code == 200
        text = httpx.get(f"{url}/metrics").text
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert requests_total(text, "predict") == 20
    images = [v for (name, _), v in values.items() if name == "jem_images_total"]
    assert sum(images) == 20
    assert list(metrics_dir.glob("*.db"))


def test_predict_latency_while_generating(
    server: tuple[str, subprocess.Popen[bytes], Path], digits: Digits
) -> None:
    url = server[0]
    with httpx.Client(base_url=url, timeout=60) as c:
        blob = upload([png_bytes(digits.test_u8[0])])

        def latencies(n: int) -> list[float]:
            out = []
            for _ in range(n):
                start = time.perf_counter()
                assert c.post("/v1/models/served/predict", files=blob).status_code == 200
                out.append(time.perf_counter() - start)
            return out

        latencies(5)
        idle = statistics.median(latencies(30))
        done = threading.Event()

        def generate() -> None:
            body = {"num_samples": 64, "steps": 600, "seed": 0}
            httpx.post(f"{url}/v1/models/served/generate", json=body, timeout=120)
            done.set()

        thread = threading.Thread(target=generate)
        thread.start()
        time.sleep(0.3)
        busy = statistics.median(latencies(30))
        overlapped = not done.is_set()
        thread.join(timeout=120)
    print(
        f"\npredict median latency (uvicorn): idle {idle * 1e3:.1f} ms, "
        f"during generation {busy * 1e3:.1f} ms"
    )
    assert overlapped, "generation finished before the measurement; make it longer"
    assert busy < max(5 * idle, idle + 0.1), (idle, busy)
