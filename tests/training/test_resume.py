"""A run killed with SIGKILL and resumed ends bit-identical to an uninterrupted run (CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from model_store import ModelStore
from tests.training._tiny import TINY

REPO = Path(__file__).resolve().parents[2]
ARGS = [
    *(f"--set={kv}" for kv in TINY),
    "--set=iterations=300",
    "--set=checkpoint_every=20",
    "--set=validate_every=10",
    "--set=keep_checkpoints=3",
    "--set=keep_checkpoints_final=3",
]


def _train(store: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "JEM_MODEL_STORE": str(store)}
    cmd = [sys.executable, "-m", "training", "train", "--no-progress", *extra]
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _checkpoints(store: ModelStore, name: str) -> list[int]:
    try:
        versions = store.list_versions(name)
    except Exception:
        return []
    found = []
    for v in versions:
        try:
            if store.manifest(f"{name}:{v}").stage == "checkpoint":
                found.append(v)
        except Exception:  # a version being written or pruned right now
            continue
    return found


def _final_weights(store: ModelStore, name: str) -> dict[str, torch.Tensor]:
    loaded = store.load(name)  # newest final version
    assert loaded.manifest.stage == "final"
    return loaded.model.state_dict()


@pytest.mark.slow
@pytest.mark.integration
def test_sigkill_then_resume_is_bit_exact(tmp_path: Path) -> None:
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    reference = _train(full_dir, "--preset=digits-jem", "--name=run", *ARGS)
    killed = _train(cut_dir, "--preset=digits-jem", "--name=run", *ARGS)
    store = ModelStore(cut_dir)
    deadline = time.monotonic() + 300
    try:
        while not _checkpoints(store, "run"):
            assert killed.poll() is None, killed.communicate()[0].decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.05)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
    finally:
        if killed.poll() is None:
            killed.kill()
    assert killed.returncode == -signal.SIGKILL
    latest = _checkpoints(store, "run")[-1]
    step = store.manifest(f"run:{latest}").training["step"]
    assert isinstance(step, int)
    assert step < 300  # it was killed mid-run
    resumed = _train(cut_dir, f"--resume=run:{latest}")
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out.decode()[-2000:]
    assert b"saved run:" in out
    out, _ = reference.communicate(timeout=600)
    assert reference.returncode == 0, out.decode()[-2000:]
    a, b = _final_weights(ModelStore(full_dir), "run"), _final_weights(store, "run")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # and the replay buffers, which carry the sampler's state forward
    buf_a = ModelStore(full_dir).load("run").buffer
    buf_b = store.load("run").buffer
    assert buf_a is not None
    assert buf_b is not None
    assert torch.equal(buf_a["x"], buf_b["x"])
