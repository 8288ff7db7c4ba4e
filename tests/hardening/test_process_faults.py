"""Process faults: SIGTERM drains in-flight requests; training killed with SIGKILL at random
points never leaves a partial version in the store and always resumes to a final version."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from model_store import ModelStore, StoreError
from tests.hardening.conftest import Digits
from tests.service_process import REPO, load_scaled, run_service, seconds_to_notice_failure
from tests.training._tiny import TINY

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# ---- SIGTERM with requests in flight ------------------------------------------------------------

IN_FLIGHT = 24


def _raw_request(
    host: str, port: int, body: bytes, path: str = "/v1/models/served/predict?ood=full"
) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except OSError as exc:  # reset: reported by the status check below
        chunks.append(f" connection error {exc}".encode())
    return b"".join(chunks)


def _accepted(pid: int) -> int:
    """Connections the server process has accepted (un-accepted ones have no file descriptor)."""
    conns = psutil.Process(pid).net_connections(kind="tcp")
    return sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED)


def test_sigterm_drains_in_flight_requests(
    store_root: Path, digits: Digits, tmp_path: Path
) -> None:
    pixels = np.asarray(digits.test_u8[:16], dtype=int).tolist()
    body = json.dumps({"pixels": pixels, "pixel_format": "uint8"}).encode()
    log = tmp_path / "server.log"
    # A long generation anchors the drain: on a fast machine the predicts alone may all be
    # answered before the signal, which would leave nothing in flight to drain.
    anchor = json.dumps({"num_samples": 32, "steps": 1500, "seed": 0}).encode()
    finished: list[tuple[float, bytes]] = []
    with run_service(store_root, log, JEM_GRACEFUL_SHUTDOWN_S="60") as server:
        socks = [
            socket.create_connection((server.host, server.port), timeout=120)
            for _ in range(IN_FLIGHT)
        ]
        gen_path = "/v1/models/served/generate"
        socks[0].sendall(_raw_request(server.host, server.port, anchor, gen_path))
        for s in socks[1:]:  # every request is complete on the wire before the signal
            s.sendall(_raw_request(server.host, server.port, body))

        def read(s: socket.socket) -> None:
            data = _read_all(s)
            finished.append((time.monotonic(), data))
            s.close()

        readers = [threading.Thread(target=read, args=(s,)) for s in socks]
        for t in readers:
            t.start()
        deadline = time.monotonic() + 60
        # every connection is uvicorn's own (accepted, or already answered and closed)
        while _accepted(server.proc.pid) + len(finished) < IN_FLIGHT:
            assert time.monotonic() < deadline, "the server did not accept the connections"
            time.sleep(0.01)
        time.sleep(0.1)  # and has read the requests; most wait behind compute
        sigterm_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        for t in readers:
            t.join(timeout=120)
        code = server.proc.wait(timeout=120)
    statuses = [data.split(b"\r\n", 1)[0].decode() for _, data in finished]
    after = sum(1 for t, _ in finished if t > sigterm_at)
    print(f"\nSIGTERM with {IN_FLIGHT} requests in flight: {after} finished after the signal")
    assert len(finished) == IN_FLIGHT
    assert all(s.startswith("HTTP/1.1 200") for s in statuses), statuses
    assert after > 0, "every request finished before SIGTERM: the drain was not exercised"
    assert code in (0, -signal.SIGTERM), code
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(r.get("msg") == "stopped" for r in records)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_broken_store_ends_the_process_with_status_3(tmp_path: Path, workers: str) -> None:
    """A failed start exits non-zero at once, also with --workers (uvicorn's parent would exit
    0, after waiting out its 60 s health-check ping): what a container needs to fail fast."""
    empty = tmp_path / "empty-store"
    empty.mkdir()
    env = {**os.environ, "JEM_MODEL_STORE": str(empty), "JEM_MODELS": "digits-jem"}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    command = [sys.executable, "-m", "service", "--port", "0", "--workers", workers]
    start = time.monotonic()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - start
    print(f"\nbroken store, {workers} worker(s): exit {done.returncode} after {seconds:.1f} s")
    assert done.returncode == 3, done.stderr[-3000:]
    assert "model 'digits-jem' cannot be served: no model named 'digits-jem'" in done.stderr
    # uvicorn's parent alone would wait out its 60 s health-check ping here
    assert seconds_to_notice_failure(done.stderr) < load_scaled(10), done.stderr[-3000:]


# ---- training killed at random points -----------------------------------------------------------

# the trainer tests' tiny run (no rendered digits), longer, with a checkpoint every 3 steps
KILLED_RUN = [
    *TINY,
    "iterations=90",
    "validate_every=10",
    "checkpoint_every=3",
    "keep_checkpoints=2",
]
SEEDS = (0, 1, 2)


def _train(store: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "training", "train", "--no-progress", f"--store={store}", *args]
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _check_no_partial_version(store: ModelStore, name: str, *, racing: bool) -> list[int]:
    """Every listed version verifies. While a trainer runs (`racing`), a version may vanish
    between listing and reading (pruned); one that is still listed must verify."""
    try:
        versions = store.list_versions(name)
    except StoreError:
        return []
    good = []
    for v in versions:
        try:
            store.verify(f"{name}:{v}")
        except StoreError:
            if racing and v not in store.list_versions(name):
                continue
            raise
        good.append(v)
    return good


def _checkpoints(store: ModelStore, name: str) -> list[int]:
    found = []
    for v in _check_no_partial_version(store, name, racing=True):
        try:
            if store.manifest(f"{name}:{v}").stage == "checkpoint":
                found.append(v)
        except StoreError:
            continue
    return found


def test_training_killed_at_random_points_resumes(tmp_path: Path) -> None:
    """Each seed: start a run, SIGKILL it at a random moment after its first checkpoint, check the
    store, resume from the newest checkpoint, SIGKILL again at random, check, resume to the end."""
    stores = {seed: ModelStore(tmp_path / f"store-{seed}") for seed in SEEDS}
    rngs = {seed: random.Random(seed) for seed in SEEDS}
    procs = {
        seed: _train(
            stores[seed].root,
            "--preset=digits-jem",
            "--name=run",
            *(f"--set={kv}" for kv in KILLED_RUN),
            f"--set=seed={seed}",
        )
        for seed in SEEDS
    }
    kills = 0
    resumed_from: dict[int, list[int]] = {seed: [] for seed in SEEDS}
    published = dict.fromkeys(SEEDS, False)  # killed between publishing and exiting
    for round_ in range(2):
        kill_at: dict[int, float | None] = dict.fromkeys(SEEDS)
        deadline = time.monotonic() + 300
        pending = set(SEEDS)
        while pending:
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            for seed in list(pending):
                proc, store = procs[seed], stores[seed]
                if proc.poll() is not None:  # finished before the kill: fine, nothing to kill
                    pending.discard(seed)
                    continue
                newest = max(_checkpoints(store, "run"), default=0)
                if kill_at[seed] is None and newest > max(resumed_from[seed], default=0):
                    kill_at[seed] = time.monotonic() + rngs[seed].uniform(0.0, 1.0)
                at = kill_at[seed]
                if at is not None and time.monotonic() >= at:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=30)
                    kills += 1
                    pending.discard(seed)
            time.sleep(0.02)
        for seed in SEEDS:
            store = stores[seed]
            versions = _check_no_partial_version(store, "run", racing=False)
            latest = _checkpoints(store, "run")
            if procs[seed].returncode == 0:
                continue
            if not latest:  # killed after publishing its final version (checkpoints deleted)
                assert store.load("run").manifest.stage == "final", seed
                published[seed] = True
                continue
            resumed_from[seed].append(latest[-1])
            procs[seed] = _train(store.root, f"--resume=run:{latest[-1]}")
            assert versions, seed
        if round_ == 1:
            break
    for seed in SEEDS:
        out, _ = procs[seed].communicate(timeout=600)
        assert procs[seed].returncode == 0 or published[seed], out.decode()[-2000:]
        store = stores[seed]
        _check_no_partial_version(store, "run", racing=False)
        final = store.load("run")  # newest final version, checksums verified
        assert final.manifest.stage == "final"
        assert final.manifest.training["step"] == 90, final.manifest.training
        assert resumed_from[seed], f"seed {seed} was never killed after a checkpoint"
    print(f"\ntraining: {kills} SIGKILLs survived over seeds {SEEDS}; resumed from {resumed_from}")
    assert kills >= len(SEEDS)
