"""`python -m bench [--quick]`: measure everything in one run; write JSON and a Markdown table."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.compute import measure_compute, measure_samplers
from bench.models import digit_images, locate_model
from bench.output import write_results
from bench.peers.harness import PEERS
from bench.peers.run import PeerPlan, environment, measure_peers
from bench.peers.table import peers_markdown
from bench.plans import make_plan, plan_json
from bench.provenance import git_commit, git_dirty
from bench.report import markdown
from bench.serving import ServingPlan, measure_serving
from bench.targets import check_targets
from bench.train_speed import seconds_per_iteration, time_to_accuracy
from jem import SGLDConfig
from model_store import ModelStore
from training.data import load_digits_dataset

__all__ = ["main"]

SECTIONS = ("compute", "serving", "training")
PEER_KEYS = {p.name.lower().replace(" ", "-"): p.name for p in PEERS}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny smoke run (seconds, not minutes)")
    p.add_argument(
        "--out", type=Path, help="results directory (default: bench/results; --quick: a temp dir)"
    )
    p.add_argument("--store", type=Path, help="model store (default: the shipped one)")
    p.add_argument("--model", default="digits-jem", help="model name to serve")
    p.add_argument(
        "--standin",
        action="store_true",
        help="an untrained model of the same shape, not the store's",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads, here and in servers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", action="append", choices=SECTIONS, help="run only these sections")
    p.add_argument(
        "--peers",
        action="store_true",
        help="instead: this service side by side with TorchServe, BentoML, LitServe and Ray "
        "Serve (installed on first use into .venv-peers from bench/peers/requirements.txt)",
    )
    p.add_argument(
        "--peer",
        action="append",
        choices=[*PEER_KEYS, "none"],
        help="with --peers: only these peers (repeat); 'none': this service alone",
    )
    p.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="with --peers: also serve the service from this checkout (e.g. a `git worktree` "
        "of the commit before a change), interleaved with the rest: a before/after in one run",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        help="with --peers: the service's worker processes (JEM_WORKERS; also the baseline's); "
        "each peer runs one worker (default 2: the cores of the machine the table is for)",
    )
    p.add_argument(
        "--baseline-workers",
        type=int,
        metavar="N",
        help="with --baseline: the baseline's worker processes (default: --workers)",
    )
    p.add_argument(
        "--warmup-rounds",
        type=int,
        metavar="N",
        help="with --peers: N untimed rounds of every row on every server first (default 2; "
        "--quick: 0), so the figures are steady-state: TorchServe's JVM front end costs 3.5-5x "
        "its later CPU per request in its first round (docs/benchmarks-peers.md, eleventh part)",
    )
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    sections = set(args.only or SECTIONS)
    plan = make_plan(args.quick, args.threads, args.seed)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "quick": args.quick,
        "started_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seed": args.seed,
        "plan": {**plan_json(plan), "threads": args.threads},
        "environment": {
            "cpu_count": os.cpu_count(),
            "load_before": list(os.getloadavg()),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "platform": platform.platform(),
            "git_commit": git_commit(),
            "git_dirty": git_dirty(),
        },
    }
    data = load_digits_dataset(seed=0)
    with tempfile.TemporaryDirectory(prefix="jem-bench-") as tmp:
        scratch = Path(tmp)
        source = locate_model(args.store, args.model, scratch, data, standin=args.standin)
        results["model"] = source.to_dict()
        print(f"model {source.ref} ({source.origin}) from {source.store}", flush=True)
        model = ModelStore(source.store).load(source.ref).model.eval()
        shape = data.spec.shape
        g = torch.Generator().manual_seed(args.seed)
        if "compute" in sections:
            c = plan["compute"]
            x = data.test.inputs()[: c["batch"]]
            print("compute: raw forward, classify, grad-norm", flush=True)
            results["compute"] = measure_compute(model, x, round_s=c["round_s"], rounds=c["rounds"])
            s = plan["samplers"]
            x0 = -1 + 2 * torch.rand((s["batch"], *shape), generator=g)
            print("compute: bare sampler vs official-JEM-style loop", flush=True)
            results["samplers"] = measure_samplers(
                model, x0, SGLDConfig(steps=s["steps"]), seed=args.seed, rounds=s["rounds"]
            )
        if "serving" in sections:
            sp: ServingPlan = plan["serving"]
            images = digit_images(data, sp.batch_images)
            logs = scratch / "logs"
            logs.mkdir()
            results["serving"] = asyncio.run(
                measure_serving(source, model, shape, images, sp, logs)
            )
        if "training" in sections:
            t = plan["training"]
            print("training: seconds per iteration", flush=True)
            training: dict[str, Any] = {
                "seconds_per_iteration": seconds_per_iteration(
                    t["steps"],
                    t["iterations"],
                    threads=args.threads,
                    seed=args.seed,
                    data=data,
                    scratch=scratch,
                ),
                "time_to_accuracy": [],
            }
            for preset_name, cap_s in t["tta"]:
                training["time_to_accuracy"].append(
                    time_to_accuracy(
                        preset_name,
                        target=t["target"],
                        every=t["every"],
                        cap_s=cap_s,
                        threads=args.threads,
                        seed=args.seed,
                        data=data,
                        scratch=scratch,
                    )
                )
            results["training"] = training
            torch.set_num_threads(args.threads)
    results["environment"]["load_after"] = list(os.getloadavg())
    results["duration_s"] = round(time.perf_counter() - started, 1)
    return results


def peers(args: argparse.Namespace) -> int:
    """`--peers`: the side-by-side table, in peers.json and peers.md."""
    keys = args.peer or list(PEER_KEYS)
    plan = PeerPlan(
        # six interleaved rounds of 1.5 s per row and server (three until issue 22's tenth
        # part): at 4.5 s a row's rate and p99 varied by more than the targets' margins from
        # sampling alone (docs/benchmarks-peers.md, "tenth part")
        duration_s=1.0 if args.quick else 9.0,
        warmup_s=0.5,
        rounds=1 if args.quick else 6,
        batch_images=8 if args.quick else 64,
        threads=args.threads,
        seed=args.seed,
        peers=tuple(PEER_KEYS[k] for k in keys if k != "none"),
        baseline=str(args.baseline.resolve()) if args.baseline is not None else None,
        workers=args.workers,
        baseline_workers=args.baseline_workers,
        # every server measured warm, as it serves in production (issue 22, eleventh part)
        warmup_rounds=(0 if args.quick else 2)
        if args.warmup_rounds is None
        else args.warmup_rounds,
    )
    data = load_digits_dataset(seed=0)
    with tempfile.TemporaryDirectory(prefix="jem-bench-peers-") as tmp:
        scratch = Path(tmp)
        source = locate_model(args.store, args.model, scratch, data, standin=args.standin)
        print(f"model {source.ref} ({source.origin}) from {source.store}", flush=True)
        results: dict[str, Any] = {"environment": environment(args.seed, plan)}
        results["environment"].update(git_commit=git_commit(), git_dirty=git_dirty())
        results["model"] = source.to_dict()
        images = digit_images(data, plan.batch_images)
        results.update(asyncio.run(measure_peers(source, images, plan, scratch)))
    results["environment"]["load_after"] = list(os.getloadavg())
    write_results(args.out, args.quick, "peers", results, peers_markdown(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.peers:
        return peers(args)
    results = run(args)
    targets = check_targets(results)
    results["targets"] = [t.to_dict() for t in targets]
    write_results(args.out, args.quick, "latest", results, markdown(results, targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
