"""Run perf_analyzer against a real `python -m service` and collect its figures.

One perf_analyzer process per (protocol, input, concurrency); its CSV (`-f`) gives throughput and
latency percentiles, and the service's own request counter says how many inference requests it
answered and with what status, so a run whose requests were refused is reported, not tabulated.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from bench.loadgen import png_bytes
from bench.perf_analyzer.input_data import image_steps
from bench.servers import REPO
from bench.venvs import ensure_venv

__all__ = [
    "DEFAULT_VENV",
    "INPUTS",
    "REQUIREMENTS",
    "Measurement",
    "Tool",
    "ensure_tool",
    "input_data",
    "measure",
    "requests_by_status",
]

REQUIREMENTS = REPO / "bench/perf_analyzer/requirements.txt"
DEFAULT_VENV = REPO / ".venv-perf-analyzer"
INPUTS = ("pixels_uint8", "images")  # the UINT8 array, and PNG files as BYTES
_INFER_ENDPOINTS = {"http": "v2_infer", "grpc": "grpc_infer"}
# what the wheel's binary links and does not ship (the CUDA runtime comes from its own wheel)
DEBIAN_PACKAGES = {"libb64.so.0d": "libb64-0d"}


@dataclass(frozen=True)
class Tool:
    """The perf_analyzer binary and the environment it runs in (the CUDA runtime's library
    directory on LD_LIBRARY_PATH: the binary links libcudart.so.12 even on a machine without
    a GPU)."""

    binary: Path
    env: dict[str, str]

    def version(self) -> str:
        out = subprocess.run(
            [str(self.binary), "--version"], env=self.env, capture_output=True, text=True
        )
        return out.stdout.strip() or out.stderr.strip()


def ensure_tool(venv: Path = DEFAULT_VENV) -> Tool:
    """perf_analyzer from its venv, installed from the pinned, hashed requirements on first use
    (or when they changed). Raises FileNotFoundError when the install did not give the binary
    or the binary cannot load a shared library (the message names the Debian package)."""
    bin_dir = ensure_venv(REQUIREMENTS, venv, label="perf_analyzer", pip_args=["--no-deps"])
    binary = bin_dir / "perf_analyzer"
    libs = sorted(venv.glob("lib/python*/site-packages/nvidia/cuda_runtime/lib"))
    if not binary.exists() or not libs:
        raise FileNotFoundError(f"no perf_analyzer binary or CUDA runtime library under {venv}")
    paths = [str(libs[0]), *filter(None, [os.environ.get("LD_LIBRARY_PATH")])]
    tool = Tool(binary, {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(paths)})
    ldd = subprocess.run(["ldd", str(binary)], env=tool.env, capture_output=True, text=True)
    missing = unresolved_libraries(ldd.stdout)
    if missing:
        packages = sorted({DEBIAN_PACKAGES.get(lib, "?") for lib in missing})
        raise FileNotFoundError(
            f"{binary} cannot load {', '.join(missing)}: install Debian's "
            f"{', '.join(packages)} (make system-deps, as root)"
        )
    return tool


def unresolved_libraries(ldd_output: str) -> list[str]:
    """The shared libraries `ldd` printed as `NAME => not found`, in its order."""
    return [
        line.split("=>")[0].strip() for line in ldd_output.splitlines() if "=> not found" in line
    ]


def input_data(images: Sequence[np.ndarray], kind: str) -> dict[str, Any]:
    """perf_analyzer's `--input-data` JSON for one of the service's inputs, one step per image
    (uint8 (H, W) arrays); requests cycle through the steps. perf_analyzer sends only the
    inputs a step names, the others being optional in the model's configuration.

    `images` goes as `b64`: perf_analyzer sends the decoded bytes as the tensor's raw data,
    which for BYTES is the protocol's own form, each element a 4-byte little-endian length and
    then its bytes (here one PNG file)."""
    if kind == "images":
        return image_steps([png_bytes(a) for a in images])
    if kind != "pixels_uint8":
        raise ValueError(f"unknown input {kind!r}; one of {', '.join(INPUTS)}")
    return {
        "data": [
            {kind: {"content": a.reshape(-1).tolist(), "shape": [*a.shape, 1]}} for a in images
        ]
    }


def requests_by_status(url: str, protocol: str) -> dict[str, float]:
    """The service's inference requests so far over `protocol`, by HTTP status (gRPC answers
    are counted under the status of the same outcome over REST), summed over its workers."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "jem_requests":
            continue
        for sample in family.samples:
            if (
                sample.name == "jem_requests_total"
                and sample.labels.get("endpoint") == _INFER_ENDPOINTS[protocol]
            ):
                status = sample.labels["status"]
                counts[status] = counts.get(status, 0.0) + sample.value
    return counts


@dataclass
class Measurement:
    protocol: str
    input: str
    concurrency: int
    throughput: float | None = None  # inferences (images) per second
    latency_us: dict[str, float] = field(default_factory=dict)  # avg, p50, p90, p95, p99
    requests: dict[str, float] = field(default_factory=dict)  # the service's count, by status
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read_csv(path: Path) -> dict[str, str]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} holds no measurement")
    return rows[-1]


def measure(
    tool: Tool,
    *,
    model: str,
    url: str,
    grpc_address: str,
    protocol: str,
    kind: str,
    data_file: Path,
    concurrency: int,
    window_requests: int,
    scratch: Path,
) -> Measurement:
    """One perf_analyzer run at one concurrency: windows of `window_requests` requests until
    three in a row agree within 25% (perf_analyzer's stability rule; at most 10 windows)."""
    m = Measurement(protocol, kind, concurrency)
    target = url.removeprefix("http://") if protocol == "http" else grpc_address
    out = scratch / f"{protocol}-{kind}-c{concurrency}.csv"
    before = requests_by_status(url, protocol)
    cmd = [
        str(tool.binary), "-m", model, "-u", target, "-i", protocol,
        "--input-data", str(data_file),
        "--concurrency-range", f"{concurrency}:{concurrency}",
        "--measurement-mode", "count_windows",
        "--measurement-request-count", str(window_requests),
        "--stability-percentage", "25", "--max-trials", "10",
        "-f", str(out), "--verbose-csv",
    ]  # fmt: skip
    run = subprocess.run(cmd, env=tool.env, capture_output=True, text=True, timeout=600)
    after = requests_by_status(url, protocol)
    m.requests = {s: after[s] - before.get(s, 0.0) for s in after if after[s] != before.get(s)}
    refused = {s: n for s, n in m.requests.items() if not s.startswith("2")}
    if run.returncode != 0 or refused:
        lines = [ln for ln in (run.stdout + run.stderr).splitlines() if ln.strip()]
        m.error = f"exit {run.returncode}, refused {refused}: " + " | ".join(lines[-3:])
        return m
    row = _read_csv(out)
    m.throughput = float(row["Inferences/Second"])
    m.latency_us = {
        "avg": float(row["Avg latency"]),
        **{p: float(row[f"{p} latency"]) for p in ("p50", "p90", "p95", "p99")},
    }
    return m


def write_input_files(images: Sequence[np.ndarray], scratch: Path) -> dict[str, Path]:
    files = {}
    for kind in INPUTS:
        files[kind] = scratch / f"input-{kind}.json"
        files[kind].write_text(json.dumps(input_data(images, kind)), encoding="utf-8")
    return files
