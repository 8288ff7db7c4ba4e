"""`python -m bench --peers`: this service against TorchServe, BentoML, LitServe and Ray Serve.

Every peer serves the same digits-jem weights (`bench/peers/common.py`: same decode, same
answer) with its own smallest idiomatic server, one worker/replica, batching at 64 / 5 ms where
the framework has it, torch threads 1. The peers live in their own venv (`.venv-peers`, made from
`bench/peers/requirements.txt` on first use), so their pins never touch the service's. All the
servers are up at once; every row runs once per round on every server, round after round, so the
shared machine's drifting load hits them alike. Before any timing, every server must give the
service's answers (labels, and confidences and energies to 1e-4) on the same PNGs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.loadgen import Body
from bench.servers import REPO, free_port
from bench.venvs import ensure_venv as ensure_peers_venv

__all__ = [
    "PEERS",
    "Peer",
    "PeerServer",
    "answers",
    "compare",
    "ensure_venv",
    "peer_env",
    "start_peer",
    "tree_cpu_s",
]

REQUIREMENTS = REPO / "bench/peers/requirements.txt"
DEFAULT_VENV = REPO / ".venv-peers"


@dataclass(frozen=True)
class PeerServer:
    name: str
    url: str
    path: str
    pid: int
    log: Path


@dataclass(frozen=True)
class Peer:
    name: str
    # (venv bin dir, port, scratch dir) -> the command that serves on 127.0.0.1:port
    command: Callable[[Path, int, Path], list[str]]
    path: str  # the predict route
    needs: tuple[str, ...] = ()  # programs that must be on PATH (TorchServe: java)
    # how its clients send images: "multipart" (`files` parts), "fields" (multipart `files0`,
    # `files1`, ...: TorchServe keeps one value per name) or "base64" (JSON `{"images": [...]}`)
    body: str = "multipart"


def _python_module(module: str) -> Callable[[Path, int, Path], list[str]]:
    def command(bin_dir: Path, port: int, scratch: Path) -> list[str]:
        return [str(bin_dir / "python"), "-m", module, "--host", "127.0.0.1", "--port", str(port)]

    return command


def _bentoml(bin_dir: Path, port: int, scratch: Path) -> list[str]:
    return [
        str(bin_dir / "bentoml"),
        "serve",
        "bench.peers.bentoml_service:Digits",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def _torchserve(bin_dir: Path, port: int, scratch: Path) -> list[str]:
    return [str(bin_dir / "python"), "-m", "bench.peers.torchserve_run", "--port", str(port),
            "--scratch", str(scratch)]  # fmt: skip


PEERS = (
    Peer("TorchServe", _torchserve, "/predictions/digits", needs=("java",), body="fields"),
    Peer("BentoML", _bentoml, "/predict"),
    # LitServe hands a request to its inference worker process by pickling it, and an uploaded
    # file does not pickle (TypeError): its idiom for images is base64 in JSON
    Peer("LitServe", _python_module("bench.peers.litserve_server"), "/predict", body="base64"),
    Peer("Ray Serve", _python_module("bench.peers.rayserve_app"), "/predict"),
)


def ensure_venv(venv: Path = DEFAULT_VENV) -> Path:
    """The peers' venv, (re)made when `requirements.txt` changed; returns its bin directory."""
    return ensure_peers_venv(REQUIREMENTS, venv, label="peers")


def peer_env(store: Path, ref: str, threads: int) -> dict[str, str]:
    """What a peer process needs: the model, the threads, this repository for jem/model_store."""
    return {
        "PEER_STORE": str(store),
        "PEER_REF": ref,
        "PEER_THREADS": str(threads),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
        # no usage reporting from the frameworks (there is no network to report to either)
        "BENTOML_DO_NOT_TRACK": "True",
        "RAY_USAGE_STATS_ENABLED": "0",
        "LITSERVE_DISABLE_TELEMETRY": "1",
    }


def missing_programs(peer: Peer) -> list[str]:
    return [p for p in peer.needs if shutil.which(p) is None]


def _ready(url: str, path: str, body: Body, proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    """'' once `POST path` answers 200, else why not: exited, an error answer three times in a
    row (a 404 or 503 counts as still starting), or no 200 within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    errors = 0
    with httpx.Client(base_url=url, timeout=10.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return f"exited with {proc.returncode}"
            try:
                r = client.post(
                    path, content=body.content, headers={"content-type": body.content_type}
                )
            except httpx.HTTPError:
                r = None
            if r is not None and r.status_code == 200:
                return ""
            if r is not None and r.status_code not in (404, 503):
                errors += 1
                if errors >= 3:
                    return f"POST {path} answered {r.status_code}: {r.text[:200]}"
            time.sleep(0.5)
    return f"no 200 from POST {path} within {timeout_s:g} s"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (frameworks fork workers), then SIGKILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@contextlib.contextmanager
def start_peer(
    peer: Peer,
    bin_dir: Path,
    env: dict[str, str],
    body: Body,
    scratch: Path,
    *,
    ready_timeout_s: float = 300.0,
) -> Iterator[PeerServer | str]:
    """Serve `peer` until the block ends: a PeerServer, or a string saying why it cannot run."""
    missing = missing_programs(peer)
    if missing:
        yield f"needs {', '.join(missing)} on PATH"
        return
    port = free_port()
    work = scratch / peer.name.replace(" ", "-").lower()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "server.log"
    full_env = {**os.environ, **env}
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            peer.command(bin_dir, port, work),
            cwd=REPO,
            env=full_env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with all its workers
        )
        try:
            url = f"http://127.0.0.1:{port}"
            why = _ready(url, peer.path, body, proc, ready_timeout_s)
            if why:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                yield f"did not start ({why}): " + " | ".join(tail)
            else:
                yield PeerServer(peer.name, url, peer.path, proc.pid, log)
        finally:
            _stop(proc)


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a server and every process under it (workers, Java, Ray's daemons)."""
    total = 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
    return total


def answers(url: str, path: str, body: Body) -> list[dict[str, Any]]:
    """One request's per-image answers, whatever the peer wraps them in."""
    response = httpx.post(
        url + path, content=body.content, headers={"content-type": body.content_type}, timeout=60
    )
    response.raise_for_status()
    data = response.json()
    return data["predictions"] if isinstance(data, dict) else data


def compare(reference: list[dict[str, Any]], other: list[dict[str, Any]], tol: float = 1e-4) -> str:
    """'' when `other` gives the same answers as `reference`, else the first difference."""
    if len(reference) != len(other):
        return f"{len(other)} answers for {len(reference)} images"
    for i, (a, b) in enumerate(zip(reference, other, strict=True)):
        if a["label"] != b["label"]:
            return f"image {i}: label {b['label']} where the service says {a['label']}"
        for key in ("confidence", "energy"):
            if abs(a[key] - b[key]) > tol * max(1.0, abs(a[key])):
                return f"image {i}: {key} {b[key]:.6g} where the service says {a[key]:.6g}"
        if [t["label"] for t in a["top_k"]] != [t["label"] for t in b["top_k"]]:
            return f"image {i}: top-k labels differ"
    return ""
