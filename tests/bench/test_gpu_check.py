"""`make gpu-check DEVICE=cpu`: the GPU check's dry run, end to end, as CI runs it (tiny sizes:
the numbers mean nothing; that every stage runs and the result files say what they hold)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu_check.data import write_cifar10
from tests.service_process import REPO
from training.readers import read_cifar_binary

STAGES = ("cuda_tests", "training", "raw", "served", "targets")


@pytest.mark.slow
@pytest.mark.integration
def test_make_gpu_check_dry_runs_on_the_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        ["make", "--no-print-directory", "gpu-check", "DEVICE=cpu", f"GPU_CHECK_OUT={tmp_path}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "gpu-check.json").read_text())
    assert all(stage in result for stage in STAGES)
    assert result["dry_run"] is True
    assert result["plan"]["device"] == "cpu"
    assert result["served"]["served_on"] == {"device": "cpu", "precision": "fp32"}
    assert result["served"]["device_memory_bytes"] is None  # no series on the CPU
    assert result["served"]["predict_64_c1"]["errors"] == 0
    assert result["served"]["generate_s"] > 0
    training = result["training"]
    assert training["wrn_k20"]["sgld_steps"] == 2  # the tiny plan's override reached the trainer
    assert training["wrn_k20"]["seconds_per_iteration"] > 0
    assert training["wrn_jempp_k5"]["preset"] == "cifar10-wrn-jem++"
    assert len(result["targets"]) == 5
    assert all(t["met"] is None for t in result["targets"])  # a dry run claims nothing
    md = (tmp_path / "gpu-check.md").read_text()
    assert "CPU dry run with tiny sizes" in md
    assert "| target | measured | limit | met |" in md


def test_gpu_check_without_a_gpu_says_so_in_one_line() -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--device", "cuda"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "python -m bench.gpu_check: error: no CUDA device here; use --device cpu for a dry run"
    )


def test_cifar_files_written_here_read_back_as_cifar10(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path, per_file=30, seed=1)
    images, labels = read_cifar_binary([folder / "data_batch_1.bin", folder / "test_batch.bin"])
    assert images.shape == (60, 32, 32, 3)
    assert sorted(set(labels.tolist())) == list(range(10))
    again, _ = read_cifar_binary([write_cifar10(tmp_path / "b", 30, seed=1) / "data_batch_1.bin"])
    assert (again == images[:30]).all()  # seeded
