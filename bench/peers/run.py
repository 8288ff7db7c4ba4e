"""The peer comparison's measurement: servers up, answers checked, rows interleaved (the table
of the results: bench/peers/table.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import (
    Body,
    LoadResult,
    base64_body,
    merge,
    multipart_body,
    png_bytes,
    run_load,
)
from bench.models import ModelSource
from bench.peers.harness import (
    PEERS,
    Peer,
    PeerServer,
    answers,
    compare,
    ensure_venv,
    peer_env,
    start_peer,
    tree_cpu_s,
)
from bench.servers import RssSampler, serve

__all__ = [
    "BASELINE",
    "ROWS",
    "SERVICE",
    "SERVICE_BASE64",
    "PeerPlan",
    "environment",
    "measure_peers",
    "request_bodies",
    "service_settings",
]

SERVICE = "this service"
# the same server sent the same PNGs as base64 in JSON, LitServe's way: like for like with it
SERVICE_BASE64 = "this service, base64 JSON"
# the service from another checkout (`--baseline DIR`): a before/after measured in the same run
BASELINE = "this service, baseline"
SAMPLE_S = 0.25  # memory sampling interval: walking a Ray process tree every 50 ms costs CPU
MB = 1024 * 1024


@dataclass(frozen=True)
class Row:
    batch: bool  # single-image requests, or requests of PeerPlan.batch_images images
    concurrency: int

    def images(self, plan: PeerPlan) -> int:
        return plan.batch_images if self.batch else 1

    def label(self, plan: PeerPlan) -> str:
        kind = f"{plan.batch_images}-image requests" if self.batch else "single-image"
        return f"{kind}, concurrency {self.concurrency}"


ROWS = (Row(False, 1), Row(False, 8), Row(False, 64), Row(True, 1), Row(True, 8))


@dataclass(frozen=True)
class PeerPlan:
    duration_s: float  # measured seconds per row and server, split over the rounds
    warmup_s: float  # per row, server and round
    rounds: int
    batch_images: int
    threads: int
    seed: int
    peers: tuple[str, ...]  # names from PEERS; () = this service alone (the smoke run)
    baseline: str | None = None  # a checkout (holding service/) served as one more server
    workers: int = 1  # the service's worker processes (JEM_WORKERS; the CLI's default 2); peers: 1
    baseline_workers: int | None = None  # the baseline's JEM_WORKERS; None: `workers`
    # untimed rounds of every row on every server before the measured ones: a JIT-compiling
    # server (TorchServe's JVM) reaches its steady state (docs/benchmarks-peers.md, eleventh part);
    # `python -m bench --peers` passes 2 (0 with --quick), the plan itself assumes none
    warmup_rounds: int = 0


@dataclass(frozen=True)
class _Target:
    name: str
    url: str
    path: str
    pid: int
    bodies: dict[int, Body]  # images per request -> body
    startup_s: float


def request_bodies(uploads: list[bytes], sizes: set[int], kind: str) -> dict[int, Body]:
    """The same PNGs, each as the server's clients send them (see `Peer.body`)."""
    if kind == "base64":
        return {n: base64_body(uploads[:n]) for n in sizes}
    return {n: multipart_body(uploads[:n], field_per_image=kind == "fields") for n in sizes}


def _check(reference: dict[int, list[dict[str, Any]]], target: _Target) -> str:
    for n, body in target.bodies.items():
        why = compare(reference[n], answers(target.url, target.path, body))
        if why:
            return f"{n}-image request: {why}"
    return ""


async def _interleave(
    targets: list[_Target], rows: tuple[Row, ...], plan: PeerPlan
) -> dict[str, list[dict[str, Any]]]:
    runs: dict[tuple[str, int], list[tuple[Any, float]]] = {}

    async def load(t: _Target, row: Row) -> LoadResult:
        return await run_load(
            t.url,
            t.path,
            t.bodies[row.images(plan)],
            concurrency=row.concurrency,
            duration_s=plan.duration_s / plan.rounds,
            warmup_s=plan.warmup_s,
        )

    for round_ in range(plan.warmup_rounds):
        print(f"  warm-up round {round_ + 1}/{plan.warmup_rounds} (not measured)", flush=True)
        for row in rows:
            for t in targets:
                await load(t, row)
    for round_ in range(plan.rounds):
        print(f"  round {round_ + 1}/{plan.rounds}", flush=True)
        for i, row in enumerate(rows):
            for t in targets:
                cpu0 = tree_cpu_s(t.pid)
                result = await load(t, row)
                runs.setdefault((t.name, i), []).append((result, tree_cpu_s(t.pid) - cpu0))
    out: dict[str, list[dict[str, Any]]] = {}
    for (name, i), rs in runs.items():
        row = rows[i]
        pooled = merge([r for r, _ in rs], row.images(plan))
        cpu_s = sum(c for _, c in rs)
        wall = sum(r.duration_s + plan.warmup_s for r, _ in rs)
        out.setdefault(name, []).append(
            {
                "row": row.label(plan),
                "images": row.images(plan),
                **pooled.to_dict(),
                "server_cpu": round(cpu_s / wall, 3),
                "server_cpu_ms_per_request": round(cpu_s * 1000 / max(1, pooled.sent), 3),
                # the same figures per round, in the order run: does a server gain as it runs?
                "rounds": [_round_figures(r, c) for r, c in rs],
            }
        )
        print(
            f"  {name:12s} {row.label(plan):34s} {pooled.requests_per_s:8.1f} req/s "
            f"{pooled.images_per_s:9.1f} img/s  p99 {pooled.p99_ms:8.2f} ms  "
            f"errors {pooled.errors}",
            flush=True,
        )
    return out


def _round_figures(result: LoadResult, cpu_s: float) -> dict[str, Any]:
    """One round of one row on one server: its rate, tail and server CPU time per request
    (CPU over every answered request, warm-up included, as the row's total divides it)."""
    return {
        "requests": result.requests,
        "errors": result.errors,
        "requests_per_s": result.requests_per_s,
        "images_per_s": result.images_per_s,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "server_cpu_ms_per_request": round(cpu_s * 1000 / max(1, result.sent), 3),
    }


def service_settings(store: Path, ref: str, threads: int, workers: int) -> dict[str, str]:
    """This service's JEM_* environment in the side-by-side runs: batching at 64 / 5 ms, as
    every peer that has batching is configured."""
    return {
        "JEM_MODEL_STORE": str(store),
        "JEM_MODELS": ref,
        "JEM_TORCH_THREADS": str(threads),
        "JEM_MAX_BATCH_SIZE": "64",
        "JEM_MAX_WAIT_MS": "5",
        "JEM_WORKERS": str(workers),
    }


async def measure_peers(
    source: ModelSource, images: list[Any], plan: PeerPlan, scratch: Path
) -> dict[str, Any]:
    """Every row on this service and on each peer in `plan.peers`; `images` uint8 (H, W)."""
    uploads = [png_bytes(a) for a in images[: plan.batch_images]]
    sizes = {row.images(plan) for row in ROWS}
    service_env = service_settings(source.store, source.ref, plan.threads, plan.workers)
    unavailable: dict[str, str] = {}
    chosen = [p for p in PEERS if p.name in plan.peers]
    bin_dir = ensure_venv() if chosen else None
    results: dict[str, Any] = {"service_env": service_env, "unavailable": unavailable}
    logs = scratch / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        t0 = time.perf_counter()
        server = stack.enter_context(serve("service", service_env, logs))
        service = _Target(
            SERVICE,
            server.url,
            f"/v1/models/{source.name}/predict",
            server.pid,
            request_bodies(uploads, sizes, "multipart"),
            round(time.perf_counter() - t0, 2),
        )
        reference = {n: answers(service.url, service.path, b) for n, b in service.bodies.items()}
        base64 = dataclasses.replace(
            service, name=SERVICE_BASE64, bodies=request_bodies(uploads, sizes, "base64")
        )
        why = _check(reference, base64)
        if why:
            raise RuntimeError(f"the service's base64 JSON answers differ from its uploads': {why}")
        targets = [service, base64]
        samplers = {SERVICE: stack.enter_context(RssSampler(server.pid, SAMPLE_S, tree=True))}
        if plan.baseline is not None:
            t0 = time.perf_counter()
            (logs / "baseline").mkdir()
            before = stack.enter_context(
                serve(
                    "service",
                    {**service_env, "JEM_WORKERS": str(plan.baseline_workers or plan.workers)},
                    logs / "baseline",
                    cwd=Path(plan.baseline),
                )
            )
            baseline = dataclasses.replace(
                service,
                name=BASELINE,
                url=before.url,
                pid=before.pid,
                startup_s=round(time.perf_counter() - t0, 2),
            )
            why = _check(reference, baseline)
            if why:
                raise RuntimeError(f"the baseline checkout's answers differ: {why}")
            targets.append(baseline)
            samplers[BASELINE] = stack.enter_context(RssSampler(before.pid, SAMPLE_S, tree=True))
        for peer in chosen:
            target = _start(stack, peer, bin_dir, source, plan, uploads, sizes, scratch)
            if isinstance(target, str):
                unavailable[peer.name] = target
                print(f"  {peer.name}: not measured: {target}", flush=True)
                continue
            why = _check(reference, target)
            if why:
                unavailable[peer.name] = f"gave other answers than the service ({why})"
                print(f"  {peer.name}: not measured: {unavailable[peer.name]}", flush=True)
                continue
            print(f"  {peer.name}: ready in {target.startup_s:.1f} s, same answers", flush=True)
            targets.append(target)
            samplers[peer.name] = stack.enter_context(RssSampler(target.pid, SAMPLE_S, tree=True))
        results["startup_s"] = {t.name: t.startup_s for t in targets if t is not base64}
        results["servers"] = await _interleave(targets, ROWS, plan)
    results["memory_mb"] = {
        name: {"idle": round(s.idle / MB, 1), "peak": round(s.peak / MB, 1)}
        for name, s in samplers.items()
    }
    return results


def _start(
    stack: contextlib.ExitStack,
    peer: Peer,
    bin_dir: Path | None,
    source: ModelSource,
    plan: PeerPlan,
    uploads: list[bytes],
    sizes: set[int],
    scratch: Path,
) -> _Target | str:
    assert bin_dir is not None
    bodies = request_bodies(uploads, sizes, peer.body)
    env = peer_env(source.store, source.ref, plan.threads)
    print(f"  starting {peer.name}", flush=True)
    t0 = time.perf_counter()
    started = stack.enter_context(start_peer(peer, bin_dir, env, bodies[1], scratch))
    if not isinstance(started, PeerServer):
        return started
    elapsed = round(time.perf_counter() - t0, 2)
    return _Target(peer.name, started.url, started.path, started.pid, bodies, elapsed)


def environment(seed: int, plan: PeerPlan) -> dict[str, Any]:
    return {
        "started_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seed": seed,
        "plan": vars(plan),
        "cpu_count": os.cpu_count(),
        "load_before": list(os.getloadavg()),
        "python": platform.python_version(),
    }
