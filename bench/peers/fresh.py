"""A peer's single-image concurrency-1 rate fresh and after load, second by second.

`python -m bench.peers.fresh [--peer NAME ...] [--store DIR] [--ref REF] [--out DIR]`: each
server (default this service, as `python -m bench --peers` runs it: two workers, batching at
64 / 5 ms; and BentoML), started alone in turn, gets single-image requests at concurrency 1 for
five seconds fresh, then six seconds of 64-image requests at concurrency 8 (the row that
precedes the next round's concurrency-1 row in `python -m bench --peers`), then ten seconds of
concurrency 1 again; one line per second, each server's median rate per phase, and the ratio of
this service's medians to each peer's. BentoML learns how long its batcher waits from the
waits of its last batches (docs/benchmarks-peers.md, twelfth part), so its concurrency-1 rate
depends on what it served before: this gives both figures beside the interleaved table's.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from dataclasses import dataclass
from pathlib import Path

from bench.loadgen import Body, LoadResult, png_bytes, run_load
from bench.models import digit_images
from bench.peers.harness import PEERS, ensure_venv, peer_env, start_peer
from bench.peers.run import SERVICE, request_bodies, service_settings
from bench.servers import serve
from training.data import load_digits_dataset

__all__ = ["PHASES", "Phase", "medians", "probe_service", "ratios", "run_phases", "summary"]


@dataclass(frozen=True)
class Phase:
    label: str
    images: int  # per request
    concurrency: int
    seconds: int  # one 1-s measurement each


PHASES = (
    Phase("fresh, single image, c=1", 1, 1, 5),
    Phase("64 images, c=8", 64, 8, 6),  # longer than BentoML's 5-s refresh of its learned wait
    Phase("after, single image, c=1", 1, 1, 10),
)

Seconds = dict[str, list[LoadResult]]  # phase label -> one result per second, in order


async def run_phases(
    url: str, path: str, bodies: dict[int, Body], phases: tuple[Phase, ...] = PHASES
) -> Seconds:
    """Every phase in turn, as 1-s loads without warm-up; one printed line per second."""
    out: Seconds = {}
    for phase in phases:
        for second in range(phase.seconds):
            r = await run_load(
                url,
                path,
                bodies[phase.images],
                concurrency=phase.concurrency,
                duration_s=1.0,
                warmup_s=0.0,
            )
            out.setdefault(phase.label, []).append(r)
            print(
                f"  {phase.label} s{second + 1}: {r.requests_per_s:7.1f} req/s, p50 "
                f"{r.p50_ms:6.1f} p99 {r.p99_ms:6.1f} ms, errors {r.errors}",
                flush=True,
            )
    return out


def medians(seconds: Seconds) -> dict[str, float]:
    """Each phase's median of its per-second rates (requests/s)."""
    return {k: statistics.median(r.requests_per_s for r in v) for k, v in seconds.items()}


def summary(name: str, rates: dict[str, float]) -> str:
    return f"{name}: " + ", ".join(f"{k} median {v:.0f}" for k, v in rates.items()) + " req/s"


def ratios(servers: dict[str, dict[str, float]]) -> list[str]:
    """One line per peer measured beside this service: this service's median over the peer's,
    phase by phase (docs/benchmarks-peers.md's "ratio, fresh / after"); none without both."""
    ours = servers.get(SERVICE)
    lines = []
    for name, theirs in servers.items():
        if ours is None or name == SERVICE:
            continue
        parts = [
            f"{k} {ours[k] / v:.2f}x" if v > 0 else f"{k} - (no answers from {name})"
            for k, v in theirs.items()
            if k in ours
        ]
        lines.append(f"{SERVICE} / {name}: " + ", ".join(parts))
    return lines


def probe_service(
    store: Path,
    ref: str,
    threads: int,
    workers: int,
    out: Path,
    uploads: list[bytes],
    phases: tuple[Phase, ...] = PHASES,
) -> Seconds:
    """This service alone, as `python -m bench --peers` serves it, through `phases`."""
    env = service_settings(store.resolve(), ref, threads, workers)
    (out / "service").mkdir(parents=True, exist_ok=True)
    bodies = request_bodies(uploads, {p.images for p in phases}, "multipart")
    with serve("service", env, out / "service") as server:
        print(f"{SERVICE} ({ref}, {workers} workers), alone:", flush=True)
        path = f"/v1/models/{ref.partition(':')[0]}/predict"
        return asyncio.run(run_phases(server.url, path, bodies, phases))


def _key(name: str) -> str:
    return name.lower().replace(" ", "-")  # as `python -m bench --peers --peer` names them


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
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
    args = parser.parse_args(argv)
    names = args.peer or ["service", "bentoml"]
    uploads = [png_bytes(a) for a in digit_images(load_digits_dataset(seed=0), 64)]
    measured: dict[str, dict[str, float]] = {}
    if "service" in names:
        seconds = probe_service(args.store, args.ref, args.threads, args.workers, args.out, uploads)
        measured[SERVICE] = medians(seconds)
        print(summary(SERVICE, measured[SERVICE]), flush=True)
    chosen = [p for p in PEERS if _key(p.name) in names]
    bin_dir = ensure_venv() if chosen else Path()
    env = peer_env(args.store.resolve(), args.ref, args.threads)
    for peer in chosen:
        bodies = request_bodies(uploads, {p.images for p in PHASES}, peer.body)
        with start_peer(peer, bin_dir, env, bodies[1], args.out) as server:
            if isinstance(server, str):
                print(f"{peer.name}: {server}")
                continue
            print(f"{peer.name} ({args.ref}), alone:", flush=True)
            measured[peer.name] = medians(asyncio.run(run_phases(server.url, server.path, bodies)))
            print(summary(peer.name, measured[peer.name]), flush=True)
    for line in ratios(measured):
        print(line, flush=True)


if __name__ == "__main__":
    main()
