"""Shared test setup: CPU only, deterministic, two threads at most (CI has 2 cores)."""

from __future__ import annotations

import os

import torch

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
torch.set_num_threads(min(2, torch.get_num_threads()))
