"""torchrun with two gloo processes trains and writes exactly one final version."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from model_store import ModelStore
from tests.training._tiny import TINY

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.integration
def test_torchrun_two_gloo_processes(tmp_path: Path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "JEM_MODEL_STORE": str(tmp_path)}
    cmd = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "training",
        "train",
        "--preset=digits-jem",
        "--name=ddp",
        "--no-progress",
        *(f"--set={kv}" for kv in TINY),
    ]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, timeout=600)
    out = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, out[-3000:]
    assert out.count("saved ddp:") == 1  # rank 0 alone writes and reports
    store = ModelStore(tmp_path)
    versions = store.list_versions("ddp")
    assert len(versions) == 1
    manifest = store.manifest(f"ddp:{versions[0]}")
    assert manifest.stage == "final"
    assert manifest.training["world_size"] == 2
    store.load("ddp")  # verifies every file
