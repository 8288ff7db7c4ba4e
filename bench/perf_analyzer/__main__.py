"""`python -m bench.perf_analyzer`: Triton's perf_analyzer against a real `python -m service`.

Serves one model (the shipped store's digits-jem unless told otherwise) with gRPC on, then runs
perf_analyzer for each protocol (REST, gRPC), input (`pixels_uint8`, PNG files as `images`) and
concurrency, and writes `perf_analyzer.md` / `.json` (default bench/results; --quick: a temporary
directory). perf_analyzer asks for every output the model's metadata lists, the grad-norm OOD
score and verdicts among them, so each request runs the classifier and one backward pass.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.models import digit_images, locate_model
from bench.output import write_results
from bench.perf_analyzer.run import (
    DEFAULT_VENV,
    INPUTS,
    Measurement,
    ensure_tool,
    measure,
    write_input_files,
)
from bench.provenance import git_commit, git_dirty
from bench.servers import free_port, serve
from training.data import load_digits_dataset

DATA_SEED = 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.perf_analyzer", description=__doc__, allow_abbrev=False
    )
    p.add_argument("--store", type=Path, help="model store (default: the shipped one)")
    p.add_argument("--model", default="digits-jem", help="model name to serve")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64], metavar="N")
    p.add_argument("--protocol", nargs="+", choices=["http", "grpc"], default=["http", "grpc"])
    p.add_argument("--input", nargs="+", choices=INPUTS, default=list(INPUTS), dest="inputs")
    p.add_argument(
        "--window-requests",
        type=int,
        default=400,
        metavar="N",
        help="requests per measurement window (perf_analyzer's count_windows mode)",
    )
    p.add_argument("--workers", type=int, default=1, help="the service's JEM_WORKERS")
    p.add_argument("--threads", type=int, default=1, help="the service's JEM_TORCH_THREADS")
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="perf_analyzer's venv")
    p.add_argument("--out", type=Path, help="results directory (default: bench/results)")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: concurrency 1 and 4, 40-request windows"
    )
    return p


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [
        "# perf_analyzer against this service",
        "",
        f"{env['perf_analyzer']}, model {results['model']['ref']}, {env['workers']} worker(s), "
        f"torch threads {env['threads']}, {env['cpus']} CPUs, load average "
        f"{env['load_before'][0]:.1f} before and {env['load_after'][0]:.1f} after; "
        f"commit {(env['git_commit'] or 'unknown')[:7]}{' (dirty)' if env['git_dirty'] else ''}.",
        "Every output requested (perf_analyzer's default), so the grad-norm path runs too.",
        "",
        "| protocol | input | concurrency | inferences/s | p50 ms | p99 ms | answered (status: n) "
        "|",
        "|---|---|---|---|---|---|---|",
    ]
    for m in results["measurements"]:
        answered = ", ".join(f"{s}: {int(n)}" for s, n in sorted(m["requests"].items()))
        if m["error"]:
            lines.append(
                f"| {m['protocol']} | {m['input']} | {m['concurrency']} | failed: "
                f"{m['error'][:160]} | | | {answered} |"
            )
            continue
        lat = m["latency_us"]
        lines.append(
            f"| {m['protocol']} | {m['input']} | {m['concurrency']} | {m['throughput']:,.0f} | "
            f"{lat['p50'] / 1000:.2f} | {lat['p99'] / 1000:.2f} | {answered} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    concurrency = [1, 4] if args.quick else args.concurrency
    window = 40 if args.quick else args.window_requests
    try:
        tool = ensure_tool(args.venv)
    except FileNotFoundError as e:
        print(f"perf_analyzer: error: {e}", file=sys.stderr)
        return 2
    data = load_digits_dataset(seed=DATA_SEED)
    results: dict[str, Any] = {
        "environment": {
            "perf_analyzer": tool.version(),
            "workers": args.workers,
            "threads": args.threads,
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "data_seed": DATA_SEED,
            "window_requests": window,
            "load_before": list(os.getloadavg()),
            "git_commit": git_commit(),
            "git_dirty": git_dirty(),
        }
    }
    with tempfile.TemporaryDirectory(prefix="jem-perf-analyzer-") as tmp:
        scratch = Path(tmp)
        source = locate_model(args.store, args.model, scratch, data)
        results["model"] = source.to_dict()
        files = write_input_files(digit_images(data, 64), scratch)
        grpc_port = free_port()
        env = {
            "JEM_MODEL_STORE": str(source.store),
            "JEM_MODELS": source.ref,
            "JEM_TORCH_THREADS": str(args.threads),
            "JEM_WORKERS": str(args.workers),
            "JEM_GRPC_PORT": str(grpc_port),
        }
        measurements: list[Measurement] = []
        with serve("service", env, scratch) as server:
            for protocol in args.protocol:
                for kind in args.inputs:
                    for c in concurrency:
                        m = measure(
                            tool,
                            model=args.model,
                            url=server.url,
                            grpc_address=f"127.0.0.1:{grpc_port}",
                            protocol=protocol,
                            kind=kind,
                            data_file=files[kind],
                            concurrency=c,
                            window_requests=window,
                            scratch=scratch,
                        )
                        shown = (
                            m.error or f"{m.throughput:,.0f}/s, p99 {m.latency_us['p99']:.0f} us"
                        )
                        print(f"{protocol} {kind} c={c}: {shown}", flush=True)
                        measurements.append(m)
    results["environment"]["load_after"] = list(os.getloadavg())
    results["measurements"] = [m.to_dict() for m in measurements]
    write_results(args.out, args.quick, "perf_analyzer", results, markdown(results))
    return 1 if any(m.error for m in measurements) else 0


if __name__ == "__main__":
    raise SystemExit(main())
