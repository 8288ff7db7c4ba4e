"""The replay buffer of persistent SGLD chains.

JEM runs only ~20 SGLD steps per training iteration; the chains are long-run because each
iteration resumes from samples stored in a buffer (PCD, Tieleman 2008). A fraction
`reinit_freq` of the drawn chains restarts from the init distribution, so the buffer keeps
exploring instead of collapsing onto a few modes. The init distributions (uniform noise, JEM++'s
per-class Gaussians, a mix of both) live in jem.chain_init and are re-exported here.

Class-conditional draws: slots are partitioned into contiguous per-class slices, class k owning
slots [k * capacity // K, (k + 1) * capacity // K), filled from the init for class k.
"""

from __future__ import annotations

import torch
from torch import Tensor

from jem.chain_init import (
    ClassGaussianInit,
    Init,
    MixedInit,
    UniformInit,
    _part,
    init_from_state_dict,
)

__all__ = ["ClassGaussianInit", "MixedInit", "ReplayBuffer", "UniformInit", "init_from_state_dict"]


class ReplayBuffer:
    """`capacity` stored chains of `shape`, drawn from and written back to by index.

    The chains live on the CPU (move a drawn batch to the model's device, and `update` takes any
    device); `generator` must then be a CPU generator. Its state is not part of `state_dict`.
    """

    def __init__(
        self,
        capacity: int,
        shape: tuple[int, ...],
        num_classes: int,
        init: Init,
        reinit_freq: float = 0.05,
        generator: torch.Generator | None = None,
    ) -> None:
        if capacity < num_classes:
            raise ValueError(f"capacity {capacity} must be >= num_classes {num_classes}")
        if not 0.0 <= reinit_freq <= 1.0:
            raise ValueError(f"reinit_freq must be in [0, 1], got {reinit_freq}")
        self.capacity, self.shape, self.num_classes = capacity, tuple(shape), num_classes
        self.init, self.reinit_freq, self.generator = init, reinit_freq, generator
        # class k owns slots [starts[k], starts[k + 1])
        self.starts = torch.tensor([k * capacity // num_classes for k in range(num_classes + 1)])
        self.labels = torch.repeat_interleave(torch.arange(num_classes), self.starts.diff())
        self.x = init.sample(capacity, self.shape, self.labels, generator)

    def sample(self, batch_size: int, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Draw `batch_size` chains (from each y's own slice if given): (x, buffer indices)."""
        g = self.generator
        if y is None:
            idx = torch.randint(0, self.capacity, (batch_size,), generator=g)
        else:
            y = y.long().cpu()
            if y.shape != (batch_size,):
                raise ValueError(f"y must have shape ({batch_size},), got {tuple(y.shape)}")
            lo, size = self.starts[y], self.starts[y + 1] - self.starts[y]
            idx = lo + (torch.rand(batch_size, generator=g) * size).long().clamp(max=size - 1)
        x = self.x[idx].clone()
        # restart a fraction reinit_freq of the chains from the init distribution, each from
        # its slot's class so a class slice only ever holds chains of that class
        fresh = torch.rand(batch_size, generator=g) < self.reinit_freq
        n_fresh = int(fresh.sum())
        if n_fresh:
            x[fresh] = self.init.sample(n_fresh, self.shape, self.labels[idx[fresh]], g)
        return x, idx

    def update(self, indices: Tensor, x: Tensor) -> None:
        """Write the advanced chains back to the slots they were drawn from."""
        self.x[indices.cpu()] = x.detach().to(device="cpu", dtype=self.x.dtype)

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors only, contiguous, no shared storage: ready for safetensors."""
        d = {
            "x": self.x.contiguous().clone(),
            "labels": self.labels.clone(),
            "starts": self.starts.clone(),
            "reinit_freq": torch.tensor([self.reinit_freq], dtype=torch.float64),
        }
        d.update({f"init.{k}": v.contiguous() for k, v in self.init.state_dict().items()})
        return d

    def load_state_dict(self, d: dict[str, Tensor]) -> None:
        """Restore the chains and the init they restart from; capacity and shape must match."""
        if tuple(d["x"].shape) != (self.capacity, *self.shape):
            raise ValueError(
                f"buffer state has shape {tuple(d['x'].shape)}, this buffer holds "
                f"{(self.capacity, *self.shape)}; build it with matching capacity and shape"
            )
        if not torch.equal(d["starts"], self.starts):
            raise ValueError("buffer state was partitioned for a different number of classes")
        self.x = d["x"].clone().float()
        self.reinit_freq = float(d["reinit_freq"][0])
        self.init = init_from_state_dict(_init_part(d))

    @classmethod
    def from_state_dict(
        cls, d: dict[str, Tensor], generator: torch.Generator | None = None
    ) -> ReplayBuffer:
        """Rebuild a buffer (capacity, shape, classes, init, chains) from `state_dict()` alone."""
        capacity, *shape = d["x"].shape
        init = init_from_state_dict(_init_part(d))
        # filled from a throwaway generator (then overwritten), so restoring consumes neither the
        # caller's random stream nor the global one
        scratch = torch.Generator().manual_seed(0)
        num_classes = d["starts"].numel() - 1
        buf = cls(capacity, tuple(shape), num_classes, init, generator=scratch)
        buf.load_state_dict(d)
        buf.generator = generator
        return buf


def _init_part(d: dict[str, Tensor]) -> dict[str, Tensor]:
    return _part(d, "init.")
