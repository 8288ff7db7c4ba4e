"""`python -m bench.gpu_check --device cuda|cpu [--out DIR]` (see bench/gpu_check/__init__.py).

On CUDA the results go to bench/results/gpu-check.{json,md} unless --out says otherwise; the CPU
dry run (tiny sizes, in CI) writes to a temporary directory unless --out is given.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.provenance import git_commit, git_dirty
from bench.servers import REPO
from model_store import ModelStore
from training.readers import read_cifar_binary

from .data import write_cifar10
from .plan import plan_for
from .report import markdown, targets
from .serve import measure_raw, measure_served
from .train import train_digits, train_wrn

__all__ = ["main"]


def _env(device: str) -> dict[str, Any]:
    cuda = device.startswith("cuda")
    return {
        "device_name": torch.cuda.get_device_name(torch.device(device)) if cuda else "CPU",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "commit": git_commit() or os.environ.get("JEM_COMMIT", "unknown"),
        "git_dirty": git_dirty(),
        "python": sys.version.split()[0],
    }


def _cuda_tests(run: bool) -> dict[str, Any]:
    if not run:
        return {"ran": False, "summary": "not run (no CUDA device: they skip, as in CI)"}
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES") or "0"}
    # only the files that hold cuda tests: collecting the whole suite would import tools
    # (schemathesis, kubernetes-validate, ...) a GPU machine does not have
    files = sorted(
        str(p.relative_to(REPO))
        for p in (REPO / "tests").rglob("test_*.py")
        if "pytest.mark.cuda" in p.read_text()
    )
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", *files]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    lines = proc.stdout.strip().splitlines()
    return {
        "ran": True,
        "returncode": proc.returncode,
        "summary": lines[-1] if lines else "no output",
        "tail": "\n".join(lines[-40:]) + proc.stderr[-2000:],
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__)
    p.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (a tiny dry run)")
    p.add_argument("--out", type=Path, help="results directory")
    p.add_argument("--scratch", type=Path, help="work directory (default: a temporary one)")
    return p


def run(device: str, out: Path, scratch: Path) -> dict[str, Any]:
    plan = plan_for(device)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "command": " ".join(["python -m bench.gpu_check", *sys.argv[1:]]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "dry_run": not device.startswith("cuda"),
        "plan": plan.to_dict(),
        "env": _env(device),
    }
    print(f"gpu-check on {result['env']['device_name']}: cuda tests", flush=True)
    result["cuda_tests"] = _cuda_tests(plan.run_cuda_tests)
    store = ModelStore(scratch / "store")
    print("training", flush=True)
    training: dict[str, Any] = {"digits": train_digits(store, device, plan.digits_overrides)}
    data_root = scratch / "data"
    folder = write_cifar10(data_root, plan.cifar_per_file)
    wrn = train_wrn(
        store, data_root, device, "cifar10-wrn", plan.wrn_iterations,
        plan.wrn_warmup_iterations, plan.wrn_overrides,
    )  # fmt: skip
    training["wrn_k20"] = wrn
    training["wrn_jempp_k5"] = train_wrn(
        store, data_root, device, "cifar10-wrn-jem++", plan.jempp_iterations,
        plan.wrn_warmup_iterations, plan.wrn_overrides,
    )  # fmt: skip
    result["training"] = training
    images, _ = read_cifar_binary([folder / "test_batch.bin"])
    images = np.ascontiguousarray(np.resize(images, (64, *images.shape[1:])))
    print("raw model", flush=True)
    result["raw"] = measure_raw(store, wrn["ref"], plan, images)
    print("served model", flush=True)
    model = wrn["ref"].split(":")[0]
    result["served"] = measure_served(store.root, model, plan, images, scratch)
    result["duration_s"] = round(time.perf_counter() - started, 1)
    result["targets"] = targets(result)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu-check.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "gpu-check.md").write_text(markdown(result))
    print(f"wrote {out / 'gpu-check.json'} and gpu-check.md ({result['duration_s']} s)")
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("python -m bench.gpu_check: error: no CUDA device here; use --device cpu for a "
              "dry run", file=sys.stderr)  # fmt: skip
        return 2
    with tempfile.TemporaryDirectory(prefix="jem-gpucheck-") as tmp:
        out = args.out or (REPO / "bench" / "results" if cuda else Path(tmp) / "results")
        scratch = args.scratch or Path(tmp)
        result = run(args.device, out, scratch)
    failed_tests = result["cuda_tests"].get("returncode", 0) != 0
    return 1 if failed_tests else 0


if __name__ == "__main__":
    sys.exit(main())
