"""torchrun / DistributedDataParallel: process-group setup, device choice, rank bookkeeping.

Launched by ``torchrun --nproc_per_node N -m training train ...``, each process reads RANK,
WORLD_SIZE and LOCAL_RANK from the environment. NCCL on GPUs, gloo on CPU. Every rank keeps
its own replay buffer and sees its own shard of every global batch; rank 0 alone writes to the
model store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "all_agree", "barrier", "cleanup", "select_device", "setup"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def select_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: cuda (this process's local GPU) > mps > cpu; anything else is used as given."""
    if requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank)
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def setup(requested_device: str = "auto") -> DistInfo:
    """Join the process group when started by torchrun; a plain single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(requested_device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, device)


def all_agree(flag: bool, info: DistInfo) -> bool:
    """True on every rank if ``flag`` is true on any rank (one rank diverging stops them all)."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()
