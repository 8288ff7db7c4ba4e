"""A closed-loop load generator: `concurrency` async aiohttp workers, each sending back to back.

Each worker sends a request, waits for the answer, sends the next. The first `warmup_s` seconds
are not recorded; then every request answered inside the `duration_s` window counts (counting
only requests that also *started* inside it would drop every request once latency nears the
window's length, as it does at high concurrency).
Bodies are encoded once, up front, so the client spends its time on HTTP, not on multipart.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field

import aiohttp
import httpx
import numpy as np
from PIL import Image

__all__ = [
    "Body",
    "LoadResult",
    "Send",
    "base64_body",
    "closed_loop",
    "merge",
    "multipart_body",
    "pixels_body",
    "png_bytes",
    "run_load",
    "timed_post",
]


@dataclass(frozen=True)
class Body:
    content: bytes
    content_type: str
    images: int
    # "multipart" (image files), "base64" (image files in JSON), "pixels" (JSON arrays) or "npy"
    # (one .npy array); bench/v2load.py: "v2-png" / "v2-uint8" (REST, binary extension),
    # "grpc-png" / "grpc-uint8"
    kind: str
    headers: tuple[tuple[str, str], ...] = ()  # sent besides Content-Type


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def multipart_body(images: Sequence[bytes], *, field_per_image: bool = False) -> Body:
    """The body httpx itself would send for `files=[("files", png), ...]`, encoded once.

    `field_per_image`: fields `files0`, `files1`, ... instead (TorchServe keeps one value per
    field name, so that is how its clients send several images).
    """
    files = [
        (f"files{i}" if field_per_image else "files", (f"{i}.png", data, "image/png"))
        for i, data in enumerate(images)
    ]
    request = httpx.Request("POST", "http://bench/", files=files)
    return Body(request.read(), request.headers["content-type"], len(images), "multipart")


def npy_body(arrays: Sequence[np.ndarray]) -> Body:
    """The binary alternative: one uint8 array [N, H, W] written by numpy.save."""
    buffer = io.BytesIO()
    np.save(buffer, np.stack(arrays))
    return Body(buffer.getvalue(), "application/x-npy", len(arrays), "npy")


def base64_body(images: Sequence[bytes]) -> Body:
    """The same image files as JSON `{"images": [base64, ...]}` (for servers that take no
    multipart uploads)."""
    payload = {"images": [base64.b64encode(data).decode("ascii") for data in images]}
    return Body(json.dumps(payload).encode(), "application/json", len(images), "base64")


def pixels_body(arrays: Sequence[np.ndarray]) -> Body:
    """The JSON alternative to uploads: uint8 pixel arrays, no image files to decode."""
    payload = {"pixels": [a.tolist() for a in arrays], "pixel_format": "uint8"}
    return Body(json.dumps(payload).encode(), "application/json", len(arrays), "pixels")


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    requests: int
    errors: int
    duration_s: float
    requests_per_s: float
    images_per_s: float
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    error_statuses: dict[str, int]
    sent: int  # every answered request, warm-up included (to divide CPU time by)
    latencies: tuple[float, ...] = field(default=(), repr=False)  # seconds; not in to_dict

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        del d["latencies"]
        return d


def merge(results: Sequence[LoadResult], images: int) -> LoadResult:
    """Pool several runs of the same load (e.g. interleaved rounds) into one result."""
    errors: dict[str, int] = {}
    for r in results:
        for status, n in r.error_statuses.items():
            errors[status] = errors.get(status, 0) + n
    return _summary(
        results[0].concurrency,
        [t for r in results for t in r.latencies],
        errors,
        sum(r.duration_s for r in results),
        images,
        sum(r.sent for r in results),
    )


def _summary(
    concurrency: int,
    latencies: list[float],
    errors: dict[str, int],
    window: float,
    images: int,
    sent: int,
) -> LoadResult:
    lat = np.asarray(latencies, dtype=np.float64) * 1000.0
    n = int(lat.size)

    def pct(q: float) -> float:
        return round(float(np.percentile(lat, q)), 3) if n else float("nan")

    return LoadResult(
        concurrency=concurrency,
        requests=n,
        errors=sum(errors.values()),
        duration_s=round(window, 3),
        requests_per_s=round(n / window, 2),
        images_per_s=round(n * images / window, 1),
        mean_ms=round(float(lat.mean()), 3) if n else float("nan"),
        p50_ms=pct(50),
        p95_ms=pct(95),
        p99_ms=pct(99),
        max_ms=round(float(lat.max()), 3) if n else float("nan"),
        error_statuses=errors,
        sent=sent,
        latencies=tuple(latencies),
    )


Send = Callable[[], Awaitable[str]]  # one request; its status ("200", "OK", ...)


async def closed_loop(
    senders: Sequence[Send], images: int, *, ok: str, duration_s: float, warmup_s: float
) -> LoadResult:
    """One worker per sender, each sending back to back for warm-up + `duration_s`. A request
    whose status is not `ok` counts as an error under its status (an exception: its type)."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup_s
    end = start + duration_s
    sent = 0

    async def worker(send: Send) -> None:
        nonlocal sent
        while (t0 := loop.time()) < end:
            try:
                status = await send()
            except Exception as exc:  # the transport failed: count it, keep the load going
                status = type(exc).__name__
            t1 = loop.time()
            sent += 1
            if not start <= t1 <= end:
                continue  # answered during the warm-up, or after the window
            if status != ok:
                errors[status] = errors.get(status, 0) + 1
                continue
            latencies.append(t1 - t0)

    await asyncio.gather(*(worker(send) for send in senders))
    return _summary(len(senders), latencies, errors, duration_s, images, sent)


async def run_load(
    url: str, path: str, body: Body, *, concurrency: int, duration_s: float, warmup_s: float
) -> LoadResult:
    """Drive `POST url+path` with `body` from `concurrency` workers for warm-up + `duration_s`."""
    headers = {"content-type": body.content_type, **dict(body.headers)}
    # aiohttp, not httpx: the client shares the machine's cores with the server it measures,
    # and httpx's pure-Python HTTP (h11, httpcore) cost 1.4-1.7 ms of CPU per request at
    # concurrency 64, more than the service's own 1.0 ms; aiohttp's C parser 0.25 ms
    # (docs/benchmarks-peers.md). One session (one keep-alive connection) per worker, as a
    # single pool shared by many concurrent requests costs the client O(concurrency) each.
    timeout = aiohttp.ClientTimeout(total=60.0)
    sessions = [
        aiohttp.ClientSession(
            base_url=url, connector=aiohttp.TCPConnector(limit=1), timeout=timeout
        )
        for _ in range(concurrency)
    ]

    def sender(session: aiohttp.ClientSession) -> Send:
        async def send() -> str:
            async with session.post(path, data=body.content, headers=headers) as response:
                await response.read()
                return str(response.status)

        return send

    try:
        return await closed_loop(
            [sender(s) for s in sessions],
            body.images,
            ok="200",
            duration_s=duration_s,
            warmup_s=warmup_s,
        )
    finally:
        for session in sessions:
            await session.close()


async def timed_post(client: httpx.AsyncClient, path: str, payload: object) -> float:
    """One JSON POST; its wall time in seconds. Raises on a non-200 answer."""
    t0 = time.perf_counter()
    response = await client.post(path, json=payload)
    elapsed = time.perf_counter() - t0
    if response.status_code != 200:
        raise RuntimeError(f"POST {path} answered {response.status_code}: {response.text[:500]}")
    return elapsed
