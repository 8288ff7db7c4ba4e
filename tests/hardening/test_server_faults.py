"""Operational faults other model servers' users reported, tried on a real uvicorn process.

Each test is one kind of fault (issue 18): a client that goes away mid-upload (499, not a
server error), a body that stalls (408 and the connection closed), probes while every request
slot is taken (they answer), errors from the HTTP layer (the API's JSON shape), and the live
gauges of a worker that was SIGKILLed (gone from /metrics; counters keep their totals).
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from model_store import ManifestDraft, ModelStore
from tests.hardening.conftest import Digits
from tests.service.conftest import png_bytes
from tests.service_process import Server, run_service

pytestmark = pytest.mark.integration

LIMIT = 8  # JEM_LIMIT_CONCURRENCY: requests in progress
BODY_TIMEOUT_S = 2.0  # JEM_BODY_TIMEOUT_S
HEADER_TIMEOUT_S = 2.0  # JEM_HEADER_TIMEOUT_S
CLAIMED = 100_000  # Content-Length of the uploads that never finish
PREDICT = "/v1/models/served/predict"
# Kubernetes' and KServe v2's probes, the scrape, and v2 model readiness (of a version too)
PROBES = (
    "/healthz",
    "/readyz",
    "/metrics",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/served/ready",
    "/v2/models/served/versions/1/ready",
)


@pytest.fixture(scope="module")
def server(store_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("server-faults") / "server.log"
    with run_service(
        store_root,
        log,
        models="served",
        JEM_LIMIT_CONCURRENCY=str(LIMIT),
        JEM_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
        JEM_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
    ) as s:
        yield s


def _head(path: str, ctype: str, length: int = CLAIMED, request_id: str = "") -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Type: {ctype}",
        f"Content-Length: {length}",
    ]
    if request_id:
        lines.append(f"X-Request-ID: {request_id}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _stall(server: Server, head: bytes, partial: bytes = b"") -> socket.socket:
    """A connection that sends a request's headers and part of its body, then waits."""
    sock = socket.create_connection((server.host, server.port), timeout=30)
    sock.sendall(head + partial)
    return sock


def _response(sock: socket.socket, timeout_s: float) -> tuple[bytes, bool]:
    """Everything the server sends within `timeout_s`, and whether it closed the connection."""
    sock.settimeout(timeout_s)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except TimeoutError:
        return b"".join(chunks), False
    except ConnectionResetError:
        return b"".join(chunks), True
    return b"".join(chunks), True


def _error(raw: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    """Status, headers (lower-case names) and JSON body of one raw HTTP/1.1 response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


def _requests_by_status(url: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for s in family.samples:
            if s.name == "jem_requests_total":
                counts[s.labels["status"]] = counts.get(s.labels["status"], 0) + s.value
    return counts


def _records(server: Server, start: int = 0) -> list[dict[str, object]]:
    lines = server.logs()[start:].splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


# ---- 1. a client that goes away is not a server error -------------------------------------------


def test_client_gone_mid_upload_is_499_on_every_route(server: Server, digits: Digits) -> None:
    png = png_bytes(digits.test_u8[0])
    multipart = (
        b'--b\r\nContent-Disposition: form-data; name="files"; filename="0.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + png
    )
    pixels = json.dumps({"pixels": [np.asarray(digits.test_u8[0]).tolist()]}).encode()
    uploads = {
        "predict-multipart": (PREDICT, "multipart/form-data; boundary=b", multipart),
        "predict-json": (PREDICT, "application/json", pixels[:40]),
        "predict-npy": (PREDICT, "application/x-npy", _npy(digits.test_u8[:64])[:200]),
        "ood-multipart": ("/v1/models/served/ood", "multipart/form-data; boundary=b", multipart),
        "generate-json": ("/v1/models/served/generate", "application/json", b'{"num_samples":'),
    }
    before = _requests_by_status(server.url)
    offset = len(server.logs())
    socks = {
        rid: _stall(server, _head(path, ctype, request_id=f"gone-{rid}"), partial)
        for rid, (path, ctype, partial) in uploads.items()
    }
    time.sleep(0.5)  # every request is being read
    for i, sock in enumerate(socks.values()):
        if i % 2:  # half of them reset the connection instead of closing it
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    deadline = time.monotonic() + 15
    while True:
        after = _requests_by_status(server.url)
        if after.get("499", 0) - before.get("499", 0) >= len(uploads):
            break
        assert time.monotonic() < deadline, (before, after)
        time.sleep(0.1)
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    assert set(delta) == {"499", "200"}, delta  # the 200s: the /metrics calls of this test
    assert delta["499"] == len(uploads), delta
    records = _records(server, offset)
    gone = [r for r in records if str(r.get("request_id", "")).startswith("gone-")]
    assert sorted(str(r["request_id"]) for r in gone) == sorted(f"gone-{k}" for k in uploads)
    assert all(r["level"] == "INFO" and r["status"] == 499 for r in gone), gone
    assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL")], records
    assert "Traceback" not in server.logs()[offset:]


# ---- 3. a stalled body gets 408; probes answer while every slot is taken -----------------------


def _trickle(sock: socket.socket, stop: threading.Event) -> None:
    try:
        while not stop.wait(0.2):
            sock.sendall(b" ")
    except OSError:
        pass  # closed by the server after its 408


def test_stalled_and_trickled_bodies_get_408_and_their_connection_closed(
    server: Server,
) -> None:
    stalled = _stall(server, _head(PREDICT, "application/json"), b'{"pixels": [')
    trickled = _stall(server, _head(PREDICT, "application/json"), b'{"pixels": [')
    stop = threading.Event()
    trickler = threading.Thread(target=_trickle, args=(trickled, stop), daemon=True)
    trickler.start()
    start = time.monotonic()
    try:
        for sock in (stalled, trickled):
            raw, closed = _response(sock, BODY_TIMEOUT_S + 10)
            assert raw, "no answer: the stalled body still holds its connection"
            status, headers, body = _error(raw)
            assert status == 408, raw
            assert body["error"]["code"] == "body_timeout"  # type: ignore[index]
            assert headers["connection"] == "close"
            assert closed, "the connection was left open after the 408"
    finally:
        stop.set()
        stalled.close()
        trickled.close()
        trickler.join(timeout=5)
    elapsed = time.monotonic() - start
    assert BODY_TIMEOUT_S - 0.5 < elapsed < BODY_TIMEOUT_S + 5, elapsed


def test_probes_answer_while_every_request_slot_is_taken(server: Server, digits: Digits) -> None:
    socks = [
        _stall(server, _head(PREDICT, "application/json"), b'{"pixels": [')
        for _ in range(LIMIT + 4)
    ]
    try:
        time.sleep(0.5)  # LIMIT of them hold a slot; the rest were refused
        with httpx.Client(base_url=server.url, timeout=5) as c:
            for probe in PROBES:
                r = c.get(probe)
                assert r.status_code == 200, (probe, r.status_code, r.text)
                # HEAD too (load balancers' checks): the GET's headers, no body
                head = c.head(probe)
                assert head.status_code == 200, (probe, head.status_code)
                assert head.content == b"", probe
                assert int(head.headers["content-length"]) > 0, probe
            r = c.post(PREDICT, files=[("files", ("0.png", png_bytes(digits.test_u8[0])))])
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "overloaded"
            assert int(r.headers["retry-after"]) >= 1
    finally:
        for sock in socks:
            sock.close()
    # the slots come back once the stalled uploads are gone
    deadline = time.monotonic() + BODY_TIMEOUT_S + 10
    while True:
        r = httpx.post(
            f"{server.url}{PREDICT}",
            files=[("files", ("0.png", png_bytes(digits.test_u8[0])))],
            timeout=10,
        )
        if r.status_code == 200:
            break
        assert time.monotonic() < deadline, r.text
        time.sleep(0.1)


def test_silent_and_half_sent_request_heads_are_closed(server: Server) -> None:
    """Neighbour of the stalled body: a connection that sends nothing, or half its headers."""
    silent = socket.create_connection((server.host, server.port), timeout=30)
    half = socket.create_connection((server.host, server.port), timeout=30)
    half.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    try:
        for sock in (silent, half):
            raw, closed = _response(sock, HEADER_TIMEOUT_S + 10)
            assert closed, "a connection without a complete request head was held open"
            if raw:  # a 408 in the error shape, or nothing at all
                status, _, body = _error(raw)
                assert status == 408, raw
                assert body["error"]["code"] == "header_timeout"  # type: ignore[index]
    finally:
        silent.close()
        half.close()


# ---- 4. errors from the HTTP layer keep the API's shape ---------------------------------------


def _raw(server: Server, data: bytes) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(data)
        raw, _ = _response(sock, 10)
    return raw


def test_http_layer_errors_keep_the_error_shape(server: Server) -> None:
    cases = [
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "bad_request"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400, "bad_request"),
    ]
    for data, status, code in cases:
        got, headers, body = _error(_raw(server, data))
        assert (got, body["error"]["code"]) == (status, code), body  # type: ignore[index]
        assert headers["content-type"] == "application/json"
        assert set(body["error"]) == {"code", "message"}  # type: ignore[arg-type]
    # a header block over JEM_MAX_HEADER_BYTES arriving in several reads: the protocol's own cap
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        for _ in range(40):
            try:
                sock.sendall(b"X-Pad: " + b"a" * 1000 + b"\r\n")
            except OSError:
                break  # closed after the answer
            time.sleep(0.005)
        raw, _ = _response(sock, 10)
    got, headers, body = _error(raw)
    assert got == 431, raw
    assert body["error"]["code"] == "headers_too_large"  # type: ignore[index]


# ---- 2. dead workers' live gauges leave /metrics; counters keep their totals ---------------------

KEY = "server-faults-key-0123456789"


def _worker_versions(metrics_dir: Path) -> dict[int, set[str]]:
    """pid -> the model versions whose jem_model_info is 1 in that worker's live gauge file."""
    found: dict[int, set[str]] = {}
    for path in metrics_dir.glob("gauge_livemax_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            name, _, labels, _ = json.loads(key)
            if name == "jem_model_info" and value == 1:
                found.setdefault(pid, set()).add(labels["version"])
    return found


def _samples(url: str, name: str) -> list[tuple[dict[str, str], float]]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return [
        (s.labels, s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name
    ]


@pytest.mark.slow
def test_a_killed_workers_gauges_leave_and_its_counts_stay(
    store_copy: Path, digits: Digits, tmp_path: Path
) -> None:
    store = ModelStore(store_copy)
    loaded = store.load("served:1")
    draft = loaded.manifest.model_dump(include=set(ManifestDraft.model_fields))
    newest = store.save("served", loaded.model, draft, buffer=loaded.buffer).version
    metrics_dir = tmp_path / "prom"
    with run_service(
        store_copy,
        tmp_path / "server.log",
        "--workers",
        "2",
        models="served",
        JEM_API_KEYS=KEY,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    ) as server:
        deadline = time.monotonic() + 120
        while len(_worker_versions(metrics_dir)) < 2:  # both workers have loaded the model
            assert time.monotonic() < deadline, server.logs()
            time.sleep(0.2)
        files = [("files", ("0.png", png_bytes(digits.test_u8[0])))]
        auth = {"Authorization": f"Bearer {KEY}"}
        for _ in range(10):
            r = httpx.post(f"{server.url}{PREDICT}", files=files, headers=auth)
            assert r.status_code == 200, r.text
        r = httpx.post(
            f"{server.url}/v1/admin/models/served/reload",
            json={"ref": "served:1"},
            headers=auth,
            timeout=60,
        )
        assert r.status_code == 200, r.text
        old = [pid for pid, versions in _worker_versions(metrics_dir).items() if "1" in versions]
        assert len(old) == 1, _worker_versions(metrics_dir)
        assert {"1", str(newest)} <= {
            labels["version"] for labels, v in _samples(server.url, "jem_model_info") if v == 1
        }
        predicts = sum(
            v
            for labels, v in _samples(server.url, "jem_requests_total")
            if labels["endpoint"] == "predict"
        )
        assert predicts == 10
        os.kill(old[0], signal.SIGKILL)
        # at the next scrape the dead worker's live gauges are gone (no need to wait for the
        # replacement the supervisor starts: it loads the startup ref, the newest version)
        deadline = time.monotonic() + 30
        while True:
            info = {labels["version"] for labels, v in _samples(server.url, "jem_model_info")}
            if "1" not in info:
                break
            assert time.monotonic() < deadline, (info, _worker_versions(metrics_dir))
            time.sleep(0.2)
        assert info == {str(newest)}
        assert old[0] not in _worker_versions(metrics_dir)
        after = sum(
            v
            for labels, v in _samples(server.url, "jem_requests_total")
            if labels["endpoint"] == "predict"
        )
        assert after == predicts, "the killed worker's requests were lost from the counter"
    assert "metrics of dead worker" in server.logs()
