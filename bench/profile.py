"""`python -m bench.profile`: where a service process spends its time under load (py-spy).

Starts `python -m service` (or the bench app) like the benchmark does, drives one endpoint with
the benchmark's load generator, samples the server with py-spy meanwhile, and prints the
functions that were on the stack most often (inclusive) and those running (self).

    .venv/bin/pip install py-spy
    .venv/bin/python -m bench.profile --images 1 --concurrency 8 --seconds 10
    .venv/bin/python -m bench.profile --module bench.naive_app --path /bench/noop/{model}
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.loadgen import multipart_body, npy_body, pixels_body, png_bytes, run_load
from bench.models import digit_images, locate_model
from bench.servers import serve
from training.data import load_digits_dataset

__all__ = ["main", "summarise"]

# "fn (/long/path/pkg/mod.py:12)" -> "fn (pkg/mod.py)": one entry per function, not per line
_FILE = re.compile(r" \((?:[^()]*?/)?((?:[^/()]+/)?[^/()]+):\d+\)$")


def summarise(raw: str, top: int = 30) -> str:
    """Inclusive and self shares of py-spy's raw (collapsed) stacks."""
    inclusive: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_FILE.sub(r" (\1)", f) for f in stack.split(";")]
        skip = 2 if frames[0].startswith("process ") else 1  # [process;] thread; frames
        for frame in set(frames[skip:]):
            inclusive[frame] += n
        self_[frames[-1]] += n
    if not total:
        return "no samples: is py-spy allowed to attach (ptrace)?"
    lines = [f"{total} samples", "-- inclusive"]
    lines += [f"{v / total:6.1%}  {k}" for k, v in inclusive.most_common(top)]
    lines += ["-- self"]
    lines += [f"{v / total:6.1%}  {k}" for k, v in self_.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("--module", default="service", help="server module (or bench.naive_app)")
    p.add_argument("--path", default="/v1/models/{model}/predict")
    p.add_argument("--images", type=int, default=1, help="images per request")
    p.add_argument(
        "--body",
        choices=("multipart", "pixels", "npy"),
        default="multipart",
        help="PNG files, JSON uint8 pixel arrays, or one .npy array",
    )
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--store", type=Path)
    p.add_argument("--model", default="digits-jem")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--env", action="append", default=[], metavar="JEM_X=V")
    p.add_argument("--raw", type=Path, help="also keep py-spy's raw (collapsed) stacks here")
    p.add_argument(
        "--gil",
        action="store_true",
        help="sample only the thread holding the interpreter lock (py-spy --gil): Python's "
        "CPU time, without threads that are runnable but waiting for a core or for the lock",
    )
    args = p.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    data = load_digits_dataset(seed=0)
    with tempfile.TemporaryDirectory(prefix="jem-profile-") as tmp:
        scratch = Path(tmp)
        source = locate_model(args.store, args.model, scratch, data)
        env = {"JEM_MODEL_STORE": str(source.store), "JEM_MODELS": source.ref}
        env.update(item.split("=", 1) for item in args.env)
        images = digit_images(data, args.images)
        if args.body == "pixels":
            body = pixels_body(images)
        elif args.body == "npy":
            body = npy_body(images)
        else:
            body = multipart_body([png_bytes(a) for a in images])
        out = scratch / "stacks.txt"
        with serve(args.module, env, scratch) as server:
            command = [spy, "record", "-p", str(server.pid), "-d", str(int(args.seconds) + 1)]
            command += ["-r", "200", "-f", "raw", "-o", str(out), "--threads", "--nonblocking"]
            command += ["--subprocesses"]  # forked workers (JEM_WORKERS=2)
            command += ["--gil"] if args.gil else []
            recorder = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            result = asyncio.run(
                run_load(
                    server.url,
                    args.path.format(model=args.model),
                    body,
                    concurrency=args.concurrency,
                    duration_s=args.seconds,
                    warmup_s=1.0,
                )
            )
            recorder.wait(timeout=args.seconds + 60)
        print(result)
        raw = out.read_text() if out.exists() else ""
        if args.raw is not None:
            args.raw.write_text(raw)
        print(summarise(raw, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
