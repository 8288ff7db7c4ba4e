"""Processes and data for the end-to-end deployment test: ports, waiting, stopping, a store."""

from __future__ import annotations

import io
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from tests.deploy._deploy_helpers import ROOT

MODEL = "digits-jem"
SHIPPED_STORE = ROOT / "model_store" / "models"
SEED = 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(
    what: str, check: Callable[[], bool], timeout_s: float, proc: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    pytest.fail(f"{what} not ready after {timeout_s} s:\n{log.read_text()[-4000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def store_root(tmp: Path) -> Path:
    """The shipped store when it holds the default model, else a small calibrated stand-in."""
    if (SHIPPED_STORE / MODEL).is_dir():
        return SHIPPED_STORE
    from jem import JEM, create_backbone
    from jem.ood import ood_scores
    from model_store import ModelStore, ScoreCalibration
    from training.data import load_digits_dataset

    torch.manual_seed(SEED)
    data = load_digits_dataset(seed=SEED)
    model = JEM(create_backbone("digits_cnn", width=16)).eval()
    scores = ood_scores(model, data.val.inputs())  # thresholds from held-out data
    calibration = {
        "temperature": 1.0,
        "fitted_on": {"split": "val", "n": len(data.val), "seed": SEED},
        "scores": {
            k: ScoreCalibration.from_scores(v.tolist()).model_dump() for k, v in scores.items()
        },
    }
    draft = {
        "backbone": {"name": "digits_cnn", "kwargs": {"width": 16}},
        "input_spec": data.spec.to_dict(),
        "class_names": data.class_names,
        "training": {"note": "untrained stand-in for the deployment test", "seed": SEED},
        "calibration": calibration,
        "sampling": {"steps": 5, "step_size": 1.0, "noise_std": 0.01},
    }
    root = tmp / "store"
    ModelStore(root).save(MODEL, model, draft)
    return root


def png_digits(n: int) -> list[bytes]:
    from training.data import load_digits_dataset

    images = load_digits_dataset(seed=SEED).test.images.numpy()[..., 0]
    out = []
    for pixels in images[:n]:
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out
