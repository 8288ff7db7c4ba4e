"""Issue 18's cases at their own scale, once, against `python -m service` with its defaults:
512 uploads closed mid-body, then 512 stalled uploads (JEM_LIMIT_CONCURRENCY is 512) while the
probes and a predict are tried. Prints what came back; not part of the test run (about 1 min).

    .venv/bin/python -m tests.hardening.server_faults_at_scale
"""

from __future__ import annotations

import socket
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.service_process import REPO, run_service

N = 512
HEAD = (
    b"POST /v1/models/digits-jem/predict HTTP/1.1\r\nHost: x\r\n"
    b'Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"pixels": ['
)


def _statuses(url: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for s in family.samples:
            if s.name == "jem_requests_total":
                counts[s.labels["status"]] += int(s.value)
    return counts


def _open(host: str, port: int) -> list[socket.socket]:
    socks = [socket.create_connection((host, port)) for _ in range(N)]
    for s in socks:
        s.sendall(HEAD)
    time.sleep(3)  # every request is being read
    return socks


def main() -> None:
    log = Path(tempfile.mkdtemp()) / "server.log"
    with run_service(REPO / "model_store" / "models", log, models="digits-jem") as server:
        for s in _open(server.host, server.port):
            s.close()
        time.sleep(3)
        text = log.read_text()
        errors = text.count('"level": "ERROR"')
        print(
            f"{N} uploads closed mid-body: statuses {dict(_statuses(server.url))}, "
            f"ERROR lines {errors}, tracebacks {text.count('Traceback')}"
        )
        start = time.monotonic()
        socks = _open(server.host, server.port)
        for path in ("/healthz", "/readyz"):
            t = time.monotonic()
            r = httpx.get(f"{server.url}{path}", timeout=10)
            print(
                f"{path} with {N} stalled uploads: {r.status_code} in {time.monotonic() - t:.3f} s"
            )
        r = httpx.post(
            f"{server.url}/v1/models/digits-jem/predict", json={"pixels": [[[0] * 8] * 8]}
        )
        print(f"predict meanwhile: {r.status_code} Retry-After {r.headers.get('retry-after')}")
        print(f"  {r.text[:120]}")
        answers: Counter[str] = Counter()
        wait = 60.0
        for s in socks:
            s.settimeout(wait)
            try:
                first = (s.recv(200) or b"closed").split(b"\r\n", 1)[0].decode()
            except TimeoutError:
                first, wait = "still open after 60 s", 0.01
            answers[first] += 1
            s.close()
        print(f"stalled uploads after {time.monotonic() - start:.1f} s: {dict(answers)}")


if __name__ == "__main__":
    main()
