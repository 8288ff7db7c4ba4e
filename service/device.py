"""Where and in what precision a model is served: `JEM_DEVICE` and `JEM_PRECISION`.

Decoding stays on the CPU. A batch is stacked into page-locked (pinned) host memory and crosses
to the device in one asynchronous copy; its outputs come back in one copy too: every output
column is packed into one float32 matrix on the device, copied into pinned host memory, and
split again on the host. On the CPU all of this is skipped (no copies, no packing).

`bf16` runs the model under `torch.autocast(dtype=torch.bfloat16)` on CUDA only; asking for it
on a CPU device is a startup error (CPU bf16 autocast is slower than fp32 on most CPUs and
would change every score against its fp32 calibration for no gain).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from service.errors import DeviceOutOfMemory

__all__ = ["Placement", "Precision", "resolve_device"]

Precision = Literal["fp32", "bf16"]


def resolve_device(requested: str) -> torch.device:
    """`auto` (the first CUDA device when one is visible, else the CPU), `cpu`, `cuda`, `cuda:N`.

    Raises ValueError naming the setting when the device does not exist here.
    """
    value = requested.strip().lower()
    if value == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(value)
    except RuntimeError:
        raise ValueError(
            f"JEM_DEVICE={requested!r} is not a device; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise ValueError(f"JEM_DEVICE={requested!r}: only auto, cpu, cuda and cuda:N are served")
    if not torch.cuda.is_available():
        raise ValueError(
            f"JEM_DEVICE={requested!r} but no CUDA device is visible to this process "
            "(check the container's GPU reservation and CUDA_VISIBLE_DEVICES, or use cpu)"
        )
    index = device.index if device.index is not None else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise ValueError(
            f"JEM_DEVICE={requested!r} but only {count} CUDA device(s) are visible "
            f"(cuda:0..cuda:{count - 1})"
        )
    return torch.device("cuda", index)


@dataclass(frozen=True)
class Placement:
    """One serving device and precision; moves batches there and back, maps device OOM."""

    device: torch.device
    precision: Precision = "fp32"
    retry_after_s: int = 1

    @classmethod
    def resolve(cls, device: str, precision: str, retry_after_s: int = 1) -> Placement:
        """Raises ValueError with the setting to change when the combination cannot be served."""
        resolved = resolve_device(device)
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"JEM_PRECISION={precision!r}: use fp32 or bf16")
        if precision == "bf16" and resolved.type != "cuda":
            raise ValueError(
                f"JEM_PRECISION=bf16 needs a CUDA device, but JEM_DEVICE={device!r} resolved to "
                f"{resolved}; use JEM_PRECISION=fp32 on the CPU"
            )
        return cls(resolved, precision, retry_after_s)  # type: ignore[arg-type]

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def describe(self) -> dict[str, str]:
        return {"device": str(self.device), "precision": self.precision}

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ---- host <-> device --------------------------------------------------------------------

    def stack(self, parts: list[Tensor]) -> Tensor:
        """Concatenate request tensors along dim 0; into pinned memory when serving on CUDA."""
        if not self.cuda:
            return torch.cat(parts) if len(parts) > 1 else parts[0]
        rows = sum(int(p.shape[0]) for p in parts)
        out = torch.empty((rows, *parts[0].shape[1:]), dtype=parts[0].dtype, pin_memory=True)
        return torch.cat(parts, out=out)

    def to_device(self, x: Tensor) -> Tensor:
        """One host -> device copy (asynchronous from pinned memory); a no-op on the CPU."""
        if not self.cuda:
            return x
        if x.device.type == "cpu" and not x.is_pinned():
            x = x.pin_memory()
        return x.to(self.device, non_blocking=True)

    def to_host(self, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Every (B, ...) output back to the CPU in one copy, as float32; a no-op on the CPU.

        The columns are packed into one (B, total) float32 matrix on the device, copied into
        pinned host memory, and split into views of their original shapes on the host.
        """
        if not self.cuda:
            return outputs
        names = list(outputs)
        batch = int(next(iter(outputs.values())).shape[0])
        shapes = [tuple(outputs[n].shape[1:]) for n in names]
        packed = torch.cat([outputs[n].float().reshape(batch, -1) for n in names], dim=1)
        host = torch.empty(packed.shape, dtype=torch.float32, pin_memory=True)
        host.copy_(packed, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        out, offset = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            width = 1
            for s in shape:
                width *= s
            out[name] = host[:, offset : offset + width].reshape(batch, *shape)
            offset += width
        return out

    # ---- memory ---------------------------------------------------------------------------

    def memory_allocated(self) -> int | None:
        """Bytes held by tensors on the CUDA device (torch's caching allocator); None on CPU."""
        if not self.cuda:
            return None
        return int(torch.cuda.memory_allocated(self.device))

    @contextlib.contextmanager
    def out_of_memory_guard(self) -> Iterator[None]:
        """Turn a device out-of-memory error into DeviceOutOfMemory (503 + Retry-After).

        The failed batch's tensors are released when the exception unwinds; the allocator's
        cached blocks are returned to the driver so the next batch starts from a clean pool,
        and the model (whose weights were never touched) keeps serving.
        """
        try:
            yield
        except torch.OutOfMemoryError as exc:
            if self.cuda:
                torch.cuda.empty_cache()
            raise DeviceOutOfMemory(
                f"the model ran out of memory on {self.device} for this batch: "
                f"{str(exc).splitlines()[0] if str(exc) else 'out of memory'}; retry after "
                "the Retry-After delay, or send fewer images / samples",
                retry_after_s=self.retry_after_s,
            ) from None
