"""A peer's single-image concurrency-1 rate fresh and after load, second by second.

`python -m bench.peers.fresh [--peer NAME ...] [--store DIR] [--ref REF] [--out DIR]`: each
server (default this service, as `python -m bench --peers` runs it: two workers, batching at
64 / 5 ms; and BentoML), started alone in turn, gets single-image requests at concurrency 1 for
five seconds fresh, then six seconds of 64-image requests at concurrency 8 (the row that
precedes the next round's concurrency-1 row in `python -m bench --peers`), then ten seconds of
concurrency 1 again; one line per second. BentoML learns how long its batcher waits from the
waits of its last batches (docs/benchmarks-peers.md, twelfth part), so its concurrency-1 rate
depends on what it served before: this gives both figures beside the interleaved table's.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from pathlib import Path

from bench.loadgen import Body, png_bytes, run_load
from bench.models import digit_images
from bench.peers.harness import PEERS, ensure_venv, peer_env, start_peer
from bench.peers.run import request_bodies, service_settings
from bench.servers import serve
from training.data import load_digits_dataset

PHASES = (  # (label, images per request, concurrency, seconds)
    ("fresh, single image, c=1", 1, 1, 5),
    ("64 images, c=8", 64, 8, 6),  # longer than BentoML's 5-s refresh of its learned wait
    ("after, single image, c=1", 1, 1, 10),
)


async def _phases(url: str, path: str, bodies: dict[int, Body]) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {}
    for label, images, concurrency, seconds in PHASES:
        for second in range(seconds):
            r = await run_load(
                url, path, bodies[images], concurrency=concurrency, duration_s=1.0, warmup_s=0.0
            )
            rates.setdefault(label, []).append(r.requests_per_s)
            print(
                f"  {label} s{second + 1}: {r.requests_per_s:7.1f} req/s, p50 {r.p50_ms:6.1f} "
                f"p99 {r.p99_ms:6.1f} ms, errors {r.errors}",
                flush=True,
            )
    return rates


def _key(name: str) -> str:
    return name.lower().replace(" ", "-")  # as `python -m bench --peers --peer` names them


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--peer",
        action="append",
        choices=["service", *(_key(p.name) for p in PEERS)],
        help="a server to probe (repeat; default: service and bentoml)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="this service's JEM_WORKERS (default 2)"
    )
    parser.add_argument(
        "--store",
        type=Path,
        default=Path("model_store/models"),
        help="model store every server reads (default: the shipped one)",
    )
    parser.add_argument(
        "--ref",
        default="digits-jem:10",
        help="the model, as the committed peers runs serve it (default digits-jem:10)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("/tmp/peers-fresh"),
        help="where the servers' logs go (default /tmp/peers-fresh); results are printed",
    )
    args = parser.parse_args()
    names = args.peer or ["service", "bentoml"]
    uploads = [png_bytes(a) for a in digit_images(load_digits_dataset(seed=0), 64)]
    if "service" in names:
        env = service_settings(args.store.resolve(), args.ref, args.threads, args.workers)
        (args.out / "service").mkdir(parents=True, exist_ok=True)
        with serve("service", env, args.out / "service") as server:
            print(f"this service ({args.ref}, {args.workers} workers), alone:", flush=True)
            path = f"/v1/models/{args.ref.partition(':')[0]}/predict"
            _report(
                "this service",
                asyncio.run(
                    _phases(server.url, path, request_bodies(uploads, {1, 64}, "multipart"))
                ),
            )
    chosen = [p for p in PEERS if _key(p.name) in names]
    bin_dir = ensure_venv() if chosen else Path()
    env = peer_env(args.store.resolve(), args.ref, args.threads)
    for peer in chosen:
        bodies = request_bodies(uploads, {1, 64}, peer.body)
        with start_peer(peer, bin_dir, env, bodies[1], args.out) as server:
            if isinstance(server, str):
                print(f"{peer.name}: {server}")
                continue
            print(f"{peer.name} ({args.ref}), alone:", flush=True)
            _report(peer.name, asyncio.run(_phases(server.url, server.path, bodies)))


def _report(name: str, rates: dict[str, list[float]]) -> None:
    summary = ", ".join(f"{k} median {statistics.median(v):.0f}" for k, v in rates.items())
    print(f"{name}: {summary} req/s", flush=True)


if __name__ == "__main__":
    main()
