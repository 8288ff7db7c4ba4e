"""An SGLD chain captured once in a CUDA graph and replayed: one launch instead of thousands.

A small network's SGLD step on a GPU is bound by kernel launches, not arithmetic (the digits
CNN: about 1.6 ms per step at batch 64 on an H200, utilisation 11-18%). Capturing the whole
chain (forward, backward to the input, update, noise, clamp, for every step) in a
`torch.cuda.CUDAGraph` replays all of its kernels with one CPU call
(https://pytorch.org/docs/stable/notes/cuda.html#cuda-graphs).

What the capture fixes, and so what a replay assumes:
- the batch shape, the step count, step size, noise and clamp (a new graph for other values);
- the model's parameters *by address*: in-place updates (optimisers, `load_state_dict`) are
  seen by the next replay, replacing a parameter tensor is not;
- the noise comes from the default CUDA generator, which CUDA graphs advance on every replay
  (seed it with `torch.cuda.manual_seed`); chains replayed from the same generator state are
  the same, up to cuDNN's own non-determinism.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor

from jem._frozen import frozen_for_input_grads
from jem.sgld import EnergyModel, SGLDConfig, run_chain

__all__ = ["GraphedSGLD"]


class GraphedSGLD:
    """`steps` unconditional SGLD steps on a fixed (B, C, H, W) CUDA batch, as one graph.

    `autocast_dtype` (e.g. torch.bfloat16) runs the model under autocast inside the graph.
    Capture happens in the constructor (after a few eager warm-up chains on a side stream, as
    CUDA graphs require); a capture that fails raises, and the caller runs the eager sampler.
    """

    def __init__(
        self,
        model: EnergyModel,
        shape: tuple[int, ...],
        config: SGLDConfig,
        device: torch.device,
        *,
        autocast_dtype: torch.dtype | None = None,
        warmup: int = 3,
    ) -> None:
        if torch.device(device).type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, got {device}")
        self.shape, self.config, self.device = tuple(shape), config, torch.device(device)
        self.autocast_dtype = autocast_dtype
        self.static_x = torch.zeros(self.shape, device=self.device)
        self.graph = torch.cuda.CUDAGraph()
        with frozen_for_input_grads(model):
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(warmup):
                    self._chain(model, self.static_x.clone())
            torch.cuda.current_stream(self.device).wait_stream(side)
            with torch.cuda.graph(self.graph):
                # an alias, so that static_x itself never requires grad and can be copied into
                self.static_out = self._chain(model, self.static_x.detach())

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        # graphs cannot capture autocast's weight-cast cache
        return torch.autocast("cuda", dtype=self.autocast_dtype, cache_enabled=False)

    def _chain(self, model: EnergyModel, x: Tensor) -> Tensor:
        with self._autocast():
            return run_chain(model, x, self.config, None, torch.randn_like)

    def __call__(self, x_init: Tensor) -> Tensor:
        """Run the captured chain from `x_init` (shape as captured; any device); a new tensor."""
        if tuple(x_init.shape) != self.shape:
            raise ValueError(
                f"captured for chains of shape {self.shape}, got {tuple(x_init.shape)}"
            )
        self.static_x.copy_(x_init, non_blocking=True)
        self.graph.replay()
        return self.static_out.clone()
