"""Serving through real uvicorn processes: the service (micro-batching on and off), the no-op,
decode-only and naive endpoints, the grad-norm path, and generation against the bare sampler."""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import torch

from bench.loadgen import (
    Body,
    LoadResult,
    merge,
    multipart_body,
    npy_body,
    pixels_body,
    png_bytes,
    run_load,
    timed_post,
)
from bench.models import ModelSource
from bench.servers import RssSampler, Server, free_port, serve
from bench.v2load import grpc_body, run_grpc_load, v2_rest_body
from jem import JEM, SGLDConfig, sgld_sample

__all__ = ["ServingPlan", "measure_serving"]

MB = 1024 * 1024


@dataclass(frozen=True)
class ServingPlan:
    duration_s: float
    warmup_s: float
    concurrencies: tuple[int, ...]  # single-image predict
    batch_concurrencies: tuple[int, ...]  # 64-image requests
    batch_images: int
    gen_samples: int
    gen_steps: int
    gen_rounds: int
    threads: int
    seed: int
    rounds: int  # every serving row runs once per round, interleaved with the others


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _env(source: ModelSource, plan: ServingPlan, **extra: str) -> dict[str, str]:
    return {
        "JEM_MODEL_STORE": str(source.store),
        "JEM_MODELS": source.ref,
        "JEM_TORCH_THREADS": str(plan.threads),
        **extra,
    }


@dataclass(frozen=True)
class _Spec:
    server: str
    path: str
    body: Body
    concurrency: int


async def _measure(spec: _Spec, server: Server, plan: ServingPlan) -> tuple[LoadResult, float]:
    """One run of `spec`'s load: the result, and the server's CPU seconds meanwhile."""
    proc = psutil.Process(server.pid)
    cpu0 = _cpu(proc)
    if spec.path.startswith("grpc://"):
        result = await run_grpc_load(
            spec.path.removeprefix("grpc://"),
            spec.body,
            concurrency=spec.concurrency,
            duration_s=plan.duration_s / plan.rounds,
            warmup_s=plan.warmup_s,
        )
    else:
        result = await run_load(
            server.url,
            spec.path,
            spec.body,
            concurrency=spec.concurrency,
            duration_s=plan.duration_s / plan.rounds,
            warmup_s=plan.warmup_s,
        )
    return result, _cpu(proc) - cpu0


async def _interleaved(
    specs: list[_Spec], servers: dict[str, Server], plan: ServingPlan
) -> list[dict[str, Any]]:
    """Every spec once per round, round after round, so that the machine's drifting load (it is
    shared) hits all rows alike; each row pools its rounds."""
    runs: dict[int, list[tuple[LoadResult, float, float]]] = {i: [] for i in range(len(specs))}
    for round_ in range(plan.rounds):
        print(f"  round {round_ + 1}/{plan.rounds}", flush=True)
        for i, spec in enumerate(specs):
            client0, wall0 = time.process_time(), time.perf_counter()
            result, server_s = await _measure(spec, servers[spec.server], plan)
            wall = time.perf_counter() - wall0
            runs[i].append((result, server_s, (time.process_time() - client0) / wall))
    rows = []
    for i, spec in enumerate(specs):
        results = [r for r, _, _ in runs[i]]
        pooled = merge(results, spec.body.images)
        server_s = sum(s for _, s, _ in runs[i])
        wall = sum(r.duration_s + plan.warmup_s for r in results)
        row = {
            "server": spec.server,
            "path": spec.path,
            "images": spec.body.images,
            "body": spec.body.kind,
            **pooled.to_dict(),
            # cores busy on average (1.0 = one core): shows which side was the bottleneck
            "server_cpu": round(server_s / wall, 3),
            "client_cpu": round(statistics.median(c for _, _, c in runs[i]), 3),
            # CPU time per request: steadier than wall time on a machine shared with others
            "server_cpu_ms_per_request": round(server_s * 1000 / max(1, pooled.sent), 3),
            "rounds_requests_per_s": [r.requests_per_s for r in results],
        }
        rows.append(row)
        print(
            f"  {spec.server:14s} {spec.path:36s} {spec.body.kind:9s} img={spec.body.images:<3d} "
            f"c={spec.concurrency:<3d} {pooled.requests_per_s:9.1f} req/s  "
            f"p50 {pooled.p50_ms:7.2f} ms  p99 {pooled.p99_ms:7.2f} ms  errors {pooled.errors}  "
            f"{row['server_cpu_ms_per_request']:.2f} server CPU ms/req",
            flush=True,
        )
    return rows


async def _generation(
    server: Server, model: JEM, shape: tuple[int, ...], plan: ServingPlan, name: str
) -> dict[str, Any]:
    """Steps/s of /generate (64 samples from noise) against `sgld_sample` on the same job."""
    sampling = SGLDConfig(steps=plan.gen_steps)
    payload = {
        "num_samples": plan.gen_samples,
        "steps": plan.gen_steps,
        "step_size": sampling.step_size,
        "noise_std": sampling.noise_std,
        "init": "noise",
        "seed": plan.seed,
    }
    path = f"/v1/models/{name}/generate"
    g = torch.Generator().manual_seed(plan.seed)
    service_s, bare_s = [], []
    async with httpx.AsyncClient(base_url=server.url, timeout=600.0) as client:
        await timed_post(client, path, {**payload, "steps": 1})  # warm the route
        for _ in range(plan.gen_rounds):  # interleaved: drifting load hits both alike
            service_s.append(await timed_post(client, path, payload))
            x0 = -1 + 2 * torch.rand((plan.gen_samples, *shape), generator=g)
            t0 = time.perf_counter()
            sgld_sample(model, x0, sampling, generator=g)
            bare_s.append(time.perf_counter() - t0)
    service = statistics.median(service_s)
    bare = statistics.median(bare_s)
    return {
        "samples": plan.gen_samples,
        "steps": plan.gen_steps,
        "rounds": plan.gen_rounds,
        "service_s": [round(s, 4) for s in service_s],
        "bare_s": [round(s, 4) for s in bare_s],
        "service_steps_per_s": round(plan.gen_steps / service, 2),
        "bare_steps_per_s": round(plan.gen_steps / bare, 2),
        # the median of the paired (same round) ratios: steadier than a ratio of medians
        "service_overhead": round(
            statistics.median(a / b for a, b in zip(service_s, bare_s, strict=True)) - 1.0, 4
        ),
    }


def _memory(rss: RssSampler) -> dict[str, float | int]:
    return {
        "idle_mb": round(rss.idle / MB, 1),
        "peak_mb": round(rss.peak / MB, 1),
        "samples": rss.samples,
    }


async def measure_serving(
    source: ModelSource,
    model: JEM,
    shape: tuple[int, ...],
    images: list[np.ndarray],
    plan: ServingPlan,
    log_dir: Path,
) -> dict[str, Any]:
    """Every serving row; `images` are uint8 (H, W) digits, `shape` the model's (C, H, W)."""
    name = source.name
    uploads = [png_bytes(a) for a in images[: plan.batch_images]]
    one = multipart_body(uploads[:1])
    many = multipart_body(uploads)
    many_pixels = pixels_body(images[: plan.batch_images])
    many_npy = npy_body(images[: plan.batch_images])
    predict = f"/v1/models/{name}/predict"
    noop, naive = f"/bench/noop/{name}", f"/bench/naive/{name}/predict"
    # the Open Inference Protocol beside /v1, on the same server: REST (binary extension, as
    # tritonclient sends it) and gRPC, with PNG files (as multipart) and uint8 pixels (as .npy)
    grpc_port = free_port()
    infer, grpc_infer = f"/v2/models/{name}/infer", f"grpc://127.0.0.1:{grpc_port}"
    batch = images[: plan.batch_images]
    v2_bodies = [
        (path, body)
        for encoding in ("png", "uint8")
        for path, body in [
            (infer, v2_rest_body(batch, encoding)),
            (grpc_infer, grpc_body(name, batch, encoding)),
        ]
    ]
    envs = {
        "batched": _env(source, plan, JEM_GRPC_PORT=str(grpc_port)),  # the shipped defaults
        "batched-nowait": _env(source, plan, JEM_MAX_WAIT_MS="0"),
        "unbatched": _env(source, plan, JEM_MAX_BATCH_SIZE="1"),
        "bench-app": _env(source, plan),
    }
    specs = [_Spec(label, predict, one, c) for label in envs for c in plan.concurrencies]
    specs = [s for s in specs if s.server != "bench-app"]
    specs += [_Spec("bench-app", noop, one, c) for c in plan.concurrencies]
    specs += [_Spec("bench-app", naive, one, c) for c in plan.concurrencies]
    specs += [
        _Spec("bench-app", f"/bench/decode/{name}", one, 1),
        _Spec("bench-app", predict, one, 1),  # cross-check: serves like 'batched'
    ]
    for c in plan.batch_concurrencies:
        specs += [
            _Spec("batched", predict, many, c),
            _Spec("batched", predict + "?ood=full", many, c),
            _Spec("batched", predict, many_pixels, c),
            _Spec("batched", predict, many_npy, c),
            _Spec("bench-app", noop, many, c),
        ]
        specs += [_Spec("batched", path, body, c) for path, body in v2_bodies]
    specs.append(_Spec("batched", predict + "?ood=full", one, 1))

    print("serving: starting the servers (all up at once; idle ones cost nothing)", flush=True)
    with contextlib.ExitStack() as stack:
        servers: dict[str, Server] = {}
        samplers: dict[str, RssSampler] = {}
        for label, env in envs.items():
            module = "bench.naive_app" if label == "bench-app" else "service"
            servers[label] = stack.enter_context(serve(module, env, log_dir))
            samplers[label] = stack.enter_context(RssSampler(servers[label].pid))
        rows = await _interleaved(specs, servers, plan)
        print("serving: generation", flush=True)
        generation = await _generation(servers["batched"], model, shape, plan, name)
    memory = {label: _memory(rss) for label, rss in samplers.items() if label != "bench-app"}
    return {"rows": rows, "memory": memory, "generation": generation}
