"""What the check runs: full sizes on CUDA (under 8 minutes on one H200), tiny ones on the CPU."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Plan", "plan_for"]


@dataclass(frozen=True)
class Plan:
    device: str
    precision: str  # served and raw: bf16 autocast on CUDA, fp32 on the CPU
    run_cuda_tests: bool
    digits_overrides: tuple[str, ...]
    cifar_per_file: int  # records in each of the 5 train files and the test file
    wrn_overrides: tuple[str, ...]  # applied to the cifar10-wrn presets
    wrn_iterations: int
    wrn_warmup_iterations: int  # not timed: cuDNN autotuning, graph capture, allocator growth
    jempp_iterations: int
    single_requests: int
    load_s: float
    generation_steps: int
    generation_samples: int
    generation_repeats: int
    raw_repeats: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_for(device: str) -> Plan:
    if device.startswith("cuda"):
        return Plan(
            device=device,
            precision="bf16",
            run_cuda_tests=True,
            # the preset as shipped: 2500 iterations, with its rendered digits (built on the CPU
            # first, or read from data/cache)
            digits_overrides=(),
            cifar_per_file=10_000,
            wrn_overrides=("sample_steps=20",),
            wrn_iterations=220,
            wrn_warmup_iterations=20,
            jempp_iterations=220,
            single_requests=200,
            load_s=5.0,
            generation_steps=100,
            generation_samples=64,
            generation_repeats=3,
            raw_repeats=50,
        )
    tiny_wrn = '{"depth": 10, "widen_factor": 1, "in_channels": 3, "num_classes": 10}'
    return Plan(
        device=device,
        precision="fp32",
        run_cuda_tests=False,  # they skip without a GPU; CI runs them as part of the suite
        digits_overrides=(
            "extra_train=",  # no rendered digits: a dry run of the loop
            "iterations=6",
            "validate_every=3",
            "checkpoint_every=100",
            "sgld_steps=2",
            "buffer_size=100",
            "sample_steps=2",
        ),
        cifar_per_file=20,
        wrn_overrides=(
            f"backbone_kwargs={tiny_wrn}",
            "sgld_steps=2",
            "batch_size=8",
            "buffer_size=20",
            "sample_steps=2",
            "num_threads=1",
        ),
        wrn_iterations=4,
        wrn_warmup_iterations=1,
        jempp_iterations=3,
        single_requests=3,
        load_s=0.5,
        generation_steps=3,
        generation_samples=4,
        generation_repeats=1,
        raw_repeats=2,
    )
