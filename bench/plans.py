"""How long and how hard `python -m bench` measures each section: the full run, or `--quick`'s
smoke run of seconds.
"""

from __future__ import annotations

from typing import Any

from bench.serving import ServingPlan

__all__ = ["make_plan", "plan_json"]


def make_plan(quick: bool, threads: int, seed: int) -> dict[str, Any]:
    """Each section's sizes, rounds and durations (seconds), for the full run or `quick`'s."""
    if quick:
        serving = ServingPlan(
            duration_s=0.6,
            warmup_s=0.1,
            concurrencies=(1, 8),
            batch_concurrencies=(1,),
            batch_images=8,
            gen_samples=8,
            gen_steps=10,
            gen_rounds=1,
            threads=threads,
            seed=seed,
            rounds=2,
        )
        return {
            "serving": serving,
            "compute": {"batch": 64, "round_s": 0.05, "rounds": 2},
            "samplers": {"batch": 64, "steps": 5, "rounds": 2},
            "training": {
                "steps": [0, 5],
                "iterations": 3,
                "tta": [("digits-baseline", 1.0)],
                "target": 0.97,
                "every": 5,
            },
        }
    serving = ServingPlan(
        duration_s=4.5,  # per row, split over the rounds
        warmup_s=0.5,  # per row and round
        concurrencies=(1, 8, 64),
        batch_concurrencies=(1, 8),
        batch_images=64,
        gen_samples=64,
        gen_steps=200,
        gen_rounds=3,
        threads=threads,
        seed=seed,
        rounds=3,
    )
    return {
        "serving": serving,
        "compute": {"batch": 64, "round_s": 1.0, "rounds": 5},
        "samplers": {"batch": 64, "steps": 50, "rounds": 7},
        "training": {
            "steps": [0, 5, 10, 20],
            "iterations": 40,
            "tta": [("digits-baseline", 60.0), ("digits-jem", 240.0)],
            "target": 0.97,
            "every": 25,
        },
    }


def plan_json(plan: dict[str, Any]) -> dict[str, Any]:
    """`plan` as JSON: the ServingPlan as its fields."""
    out = dict(plan)
    out["serving"] = vars(plan["serving"])
    return out
