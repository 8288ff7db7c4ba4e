"""`python -m bench.ab`: two (or more) checkouts of the service, side by side, interleaved.

A before/after of a service change measured in one run: each NAME=DIR starts `python -m service`
from that directory (a `git worktree` of the old commit, and the working tree), all on the same
model store, and drives them with the benchmark's load generator round by round, so that the
machine's drifting load hits every variant alike. Rows: single-image predict at concurrency 1,
8 and 64, and 64-image requests as PNG uploads (concurrency 1 and 8), JSON pixels and one .npy
array.

    git worktree add /tmp/before HEAD~3
    .venv/bin/python -m bench.ab before=/tmp/before after=. --rounds 3

A setting rather than a commit: the same directory twice, one variant with its own JEM_* values.

    .venv/bin/python -m bench.ab one=. two=. --env two:JEM_WORKERS=2

`--case "c=64"` keeps only the rows whose name contains that text (more rounds in the same time).
Besides the server's CPU time per request, each row gives the mean images per forward pass in
that window (from the server's `jem_batch_size` histogram): a server that got less of a shared
machine's CPU queues more requests and batches them more, which lowers its CPU per request by
itself, so compare CPU per request between variants whose batches were alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np

from bench.loadgen import Body, multipart_body, npy_body, pixels_body, png_bytes, run_load
from bench.models import digit_images, locate_model
from bench.peers.harness import tree_cpu_s
from bench.servers import serve
from training.data import load_digits_dataset

__all__ = ["main"]


_BATCH = re.compile(r"^jem_batch_size_(sum|count)\{[^}]*\} (\S+)$", re.MULTILINE)


def _batches(url: str) -> tuple[float, float]:
    """(images, forward passes) so far, from the server's /metrics (all its workers)."""
    text = httpx.get(url + "/metrics", timeout=30).text
    totals = {"sum": 0.0, "count": 0.0}
    for kind, value in _BATCH.findall(text):
        totals[kind] += float(value)
    return totals["sum"], totals["count"]


def _cases(images: list[np.ndarray], n: int) -> list[tuple[str, Body, int]]:
    one = multipart_body([png_bytes(images[0])])
    many = images[:n]
    return [
        ("1 PNG, c=1", one, 1),
        ("1 PNG, c=8", one, 8),
        ("1 PNG, c=64", one, 64),
        (f"{n} PNGs, c=1", multipart_body([png_bytes(a) for a in many]), 1),
        (f"{n} PNGs, c=8", multipart_body([png_bytes(a) for a in many]), 8),
        (f"{n} as JSON pixels, c=1", pixels_body(many), 1),
        (f"{n} as .npy, c=1", npy_body(many), 1),
    ]


async def _run(
    variants: list[tuple[str, Path]],
    env: dict[str, str],
    extra: dict[str, dict[str, str]],
    model: str,
    args: argparse.Namespace,
) -> None:
    data = load_digits_dataset(seed=0)
    cases = [c for c in _cases(digit_images(data, args.images), args.images) if args.case in c[0]]
    path = f"/v1/models/{model}/predict"
    results: dict[tuple[str, str], list[tuple[float, float, float, float, float]]] = {}
    unsupported: set[tuple[str, str]] = set()
    with tempfile.TemporaryDirectory(prefix="jem-ab-") as tmp, contextlib.ExitStack() as stack:
        servers = [
            (
                name,
                stack.enter_context(
                    serve("service", {**env, **extra.get(name, {})}, Path(tmp), cwd=cwd)
                ),
            )
            for name, cwd in variants
        ]
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds}", flush=True)
            for case, body, concurrency in cases:
                for name, server in servers:
                    images0, passes0 = _batches(server.url)
                    cpu0 = tree_cpu_s(server.pid)
                    r = await run_load(
                        server.url,
                        path,
                        body,
                        concurrency=concurrency,
                        duration_s=args.seconds,
                        warmup_s=0.5,
                    )
                    if set(r.error_statuses) == {"415"} and not r.requests:
                        unsupported.add((case, name))  # an older checkout without this input
                    elif r.errors:
                        raise RuntimeError(f"{name} {case}: {r.errors} errors {r.error_statuses}")
                    cpu_ms = (tree_cpu_s(server.pid) - cpu0) * 1000 / max(1, r.sent)
                    images, passes = _batches(server.url)
                    batch = (images - images0) / max(1.0, passes - passes0)
                    results.setdefault((case, name), []).append(
                        (r.images_per_s, r.p50_ms, r.p99_ms, cpu_ms, batch)
                    )
    print(
        "\n| case | variant | images/s | p50 ms | p99 ms | server CPU ms/request | images/batch |"
        "\n|---|---|---:|---:|---:|---:|---:|"
    )
    for (case, name), runs in results.items():
        if (case, name) in unsupported:
            print(f"| {case} | {name} | (not supported: 415) | | |")
            continue
        med = [statistics.median(run[i] for run in runs) for i in range(5)]
        print(
            f"| {case} | {name} | {med[0]:,.0f} | {med[1]:.2f} | {med[2]:.2f} | {med[3]:.2f} "
            f"| {med[4]:.1f} |"
        )
    print(
        f"\nmedians of {args.rounds} interleaved rounds of {args.seconds:g} s each; server CPU: "
        "the process tree's CPU time over the requests sent (warm-up included)"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    p.add_argument("variants", nargs="+", metavar="NAME=DIR", help="a checkout to serve from")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0, help="measured seconds per row and round")
    p.add_argument("--images", type=int, default=64, help="images in the multi-image requests")
    p.add_argument("--store", type=Path, help="model store (default: the shipped one)")
    p.add_argument("--model", default="digits-jem")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--case", default="", help="only the rows whose name contains this text")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME:JEM_X=V",
        help="a setting for one variant only (repeat)",
    )
    args = p.parse_args(argv)
    variants = []
    for item in args.variants:
        name, sep, directory = item.partition("=")
        if not sep or not Path(directory, "service").is_dir():
            p.error(f"{item!r}: expected NAME=DIR with DIR a checkout holding service/")
        variants.append((name, Path(directory).resolve()))
    extra: dict[str, dict[str, str]] = {}
    names = {name for name, _ in variants}
    for item in args.env:
        name, sep, setting = item.partition(":")
        key, eq, value = setting.partition("=")
        if not sep or not eq or name not in names:
            p.error(f"--env {item!r}: expected NAME:JEM_X=V with NAME one of {sorted(names)}")
        extra.setdefault(name, {})[key] = value
    with tempfile.TemporaryDirectory(prefix="jem-ab-model-") as scratch:
        source = locate_model(args.store, args.model, Path(scratch), load_digits_dataset(seed=0))
        env = {
            "JEM_MODEL_STORE": str(source.store),
            "JEM_MODELS": source.ref,
            "JEM_TORCH_THREADS": str(args.threads),
        }
        asyncio.run(_run(variants, env, extra, source.name, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
