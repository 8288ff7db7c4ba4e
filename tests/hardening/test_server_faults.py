"""Operational faults other model servers' users reported, tried on a real uvicorn process.

Each test is one kind of fault (issue 18): a client that goes away mid-upload (499, not a
server error), a body that stalls (408 and the connection closed), probes while every request
slot is taken (they answer), errors from the HTTP layer (the API's JSON shape). A SIGKILLed
worker's live gauges: test_worker_metrics.py.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.hardening._raw_http import (
    parse_response,
    read_response,
    request_head,
    send_raw,
    stall,
)
from tests.hardening.conftest import Digits
from tests.service.conftest import png_bytes
from tests.service_process import Server, run_service

pytestmark = pytest.mark.integration

LIMIT = 8  # JEM_LIMIT_CONCURRENCY: requests in progress
BODY_TIMEOUT_S = 2.0  # JEM_BODY_TIMEOUT_S
HEADER_TIMEOUT_S = 2.0  # JEM_HEADER_TIMEOUT_S
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
        rid: stall(server, request_head(path, ctype, request_id=f"gone-{rid}"), partial)
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
    stalled = stall(server, request_head(PREDICT, "application/json"), b'{"pixels": [')
    trickled = stall(server, request_head(PREDICT, "application/json"), b'{"pixels": [')
    stop = threading.Event()
    trickler = threading.Thread(target=_trickle, args=(trickled, stop), daemon=True)
    trickler.start()
    start = time.monotonic()
    try:
        for sock in (stalled, trickled):
            raw, closed = read_response(sock, BODY_TIMEOUT_S + 10)
            assert raw, "no answer: the stalled body still holds its connection"
            status, headers, body = parse_response(raw)
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
        stall(server, request_head(PREDICT, "application/json"), b'{"pixels": [')
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
            raw, closed = read_response(sock, HEADER_TIMEOUT_S + 10)
            assert closed, "a connection without a complete request head was held open"
            if raw:  # a 408 in the error shape, or nothing at all
                status, _, body = parse_response(raw)
                assert status == 408, raw
                assert body["error"]["code"] == "header_timeout"  # type: ignore[index]
    finally:
        silent.close()
        half.close()


# ---- 4. errors from the HTTP layer keep the API's shape ---------------------------------------


def test_http_layer_errors_keep_the_error_shape(server: Server) -> None:
    cases = [
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "bad_request"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400, "bad_request"),
    ]
    for data, status, code in cases:
        got, headers, body = parse_response(send_raw(server, data))
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
        raw, _ = read_response(sock, 10)
    got, headers, body = parse_response(raw)
    assert got == 431, raw
    assert body["error"]["code"] == "headers_too_large"  # type: ignore[index]
