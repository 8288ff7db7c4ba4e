"""Shared test setup: CPU only, deterministic, two threads at most (CI has 2 cores).

GPUs are hidden unless CUDA_VISIBLE_DEVICES is set explicitly (make gpu-check sets it); tests
marked `cuda` skip when no CUDA device is visible.
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (run by make gpu-check on a GPU machine)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
