"""The CUDA side of a training step: data kept on the device, noise drawn there, SGLD graphed.

On a CPU device none of this is used and the loop is exactly the seeded, bit-exact CPU loop.
On CUDA:
- cuDNN autotuning (`torch.backends.cudnn.benchmark`): every training shape is fixed, so the
  search runs once per shape; conv weights are channels-last (jem.use_fast_layout);
- the training images stay on the device as uint8 when they take at most a quarter of its
  free memory (CIFAR-10's 45,000 training images: 138 MB), and augmentation (crop, flip) and
  the data noise run there: no per-step host -> device copy of the batch;
- SGLD noise comes from device generators, so the chain never waits on the host; with
  `sgld_cuda_graph` the whole chain is captured once in a CUDA graph (jem.sgld_graph) and
  replayed each iteration, one launch instead of thousands (the digits CNN is launch-bound).

Randomness on CUDA is seeded per (seed, rank, attempt) like the CPU streams but is not
bit-exact across runs (cuDNN's kernels are not deterministic); a resumed CUDA run reseeds
these device streams from the resumed step.
"""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import Tensor

from jem import GraphedSGLD, InputSpec, SGLDConfig, sgld_sample, uint8_to_tensor
from training.batches import augment, derive_seed
from training.data import LabeledImages

__all__ = ["CudaPath"]

log = logging.getLogger("training")

_DEVICE_NOISE, _GRAPH_NOISE = 2, 3  # derive_seed stream numbers beside main (0) and buffer (1)


class CudaPath:
    def __init__(
        self,
        train: LabeledImages,
        spec: InputSpec,
        device: torch.device,
        *,
        seed: int,
        rank: int,
        use_graph: bool,
        autocast_dtype: torch.dtype | None,
        resident_fraction: float = 0.25,
    ) -> None:
        if device.type != "cuda":
            raise ValueError(f"CudaPath needs a CUDA device, got {device}")
        torch.backends.cudnn.benchmark = True
        self.device, self.spec, self.seed, self.rank = device, spec, seed, rank
        self.use_graph, self.autocast_dtype = use_graph, autocast_dtype
        self.labels = train.labels.to(device)
        free, _ = torch.cuda.mem_get_info(device)
        nbytes = train.images.numel() * train.images.element_size()
        self.images: Tensor | None = None
        if nbytes <= resident_fraction * free:
            self.images = train.images.to(device)
        self.train = train
        self.noise = torch.Generator(device)
        self._graph: GraphedSGLD | None = None
        self._graph_failed = False
        self.reseed(0)

    def reseed(self, attempt: int) -> None:
        """Device streams for a new attempt (a rollback) or a resumed step."""
        self.noise.manual_seed(derive_seed(self.seed, self.rank, attempt, _DEVICE_NOISE))
        with torch.cuda.device(self.device):
            # a CUDA graph draws from the default generator (jem.sgld_graph)
            torch.cuda.manual_seed(derive_seed(self.seed, self.rank, attempt, _GRAPH_NOISE))

    @property
    def resident(self) -> bool:
        return self.images is not None

    @property
    def graphed(self) -> bool:
        """True once the SGLD chain runs as a captured CUDA graph."""
        return self._graph is not None and not self._graph_failed

    def batch(
        self, idx: Tensor, mode: str, data_noise: float, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """Inputs (B, C, H, W) in the value range, and labels, on the device.

        Crop offsets and flips are drawn from the CPU `generator` (a few bytes) and applied on
        the device; the data noise is drawn on the device.
        """
        if self.images is not None:
            didx = idx.to(self.device, non_blocking=True)
            x = uint8_to_tensor(self.images[didx], self.spec)
            y = self.labels[didx]
        else:
            x = self.train.inputs(idx).pin_memory().to(self.device, non_blocking=True)
            y = self.train.labels[idx].to(self.device, non_blocking=True)
        x = augment(x, mode, generator)
        if data_noise > 0:
            x = x + data_noise * torch.randn(x.shape, generator=self.noise, device=self.device)
        return x.contiguous(memory_format=torch.channels_last), y

    def sample(self, model: torch.nn.Module, x0: Tensor, config: SGLDConfig) -> Tensor:
        """Advance the chains `x0` (any device) by `config.steps` SGLD steps, on the device."""
        x0 = x0.pin_memory().to(self.device, non_blocking=True) if x0.device.type == "cpu" else x0
        if self.use_graph and not self._graph_failed:
            if self._graph is None or self._graph.shape != tuple(x0.shape):
                try:
                    self._graph = GraphedSGLD(
                        model,  # type: ignore[arg-type]
                        tuple(x0.shape),
                        config,
                        self.device,
                        autocast_dtype=self.autocast_dtype,
                    )
                except Exception as exc:  # capture unsupported here: the eager chain is the same
                    log.warning("SGLD CUDA graph capture failed (%s); running eagerly", exc)
                    self._graph_failed = True
            if self._graph is not None and self.graphed:
                return self._graph(x0)
        autocast = (
            torch.autocast("cuda", dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            return sgld_sample(model, x0, config, generator=self.noise)  # type: ignore[arg-type]
