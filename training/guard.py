"""The divergence guard: notice when JEM training has gone wrong, and say so by name.

JEM is known to diverge: the official code stops on purpose when the loss passes 1e8 and the
authors restart by hand. Divergence is not always loud: the run can also collapse silently, with
validation accuracy falling far below its best while the loss stays finite. The guard checks each
step (finite loss, bounded energies, bounded sampled pixels) and each validation (no collapse);
the trainer answers a trip by rolling back to the last good state, reseeding and lowering the
learning rate, and gives up with :class:`TrainingDiverged` after ``retries`` attempts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from training.objective import LossParts

__all__ = ["DivergenceGuard", "TrainingDiverged", "Trip"]


class TrainingDiverged(RuntimeError):  # noqa: N818 (the name says what happened)
    """Training diverged more often than the guard may retry."""

    def __init__(self, trips: list[Trip], retries: int) -> None:
        self.trips = trips
        last = trips[-1] if trips else None
        what = f"{last.reason} at step {last.step}" if last else "unknown"
        super().__init__(
            f"training diverged {len(trips)} time(s) and the guard gave up after {retries} "
            f"rollback(s); last: {what}. Try a lower lr (--set lr=...), a larger energy_reg "
            "(e.g. 0.1), sgld_clamp=true, buffer_init=gaussian (JEM++), or fewer sgld_steps "
            "with a smaller sgld_step_size; see docs/training.md"
        )


@dataclass(frozen=True)
class Trip:
    step: int
    reason: str

    def to_dict(self) -> dict[str, int | str]:
        return {"step": self.step, "reason": self.reason}


@dataclass
class DivergenceGuard:
    max_energy: float = 1e4
    max_pixel: float = 10.0
    collapse_drop: float = 0.3
    best_val_acc: float = 0.0

    def check_step(self, step: int, parts: LossParts) -> Trip | None:
        loss = float(parts.loss.detach())
        if not math.isfinite(loss):
            return Trip(step, f"non-finite loss ({loss})")
        if not math.isfinite(parts.max_abs_energy) or parts.max_abs_energy > self.max_energy:
            return Trip(step, f"|energy| {parts.max_abs_energy:.3g} beyond {self.max_energy:.3g}")
        extreme = max(abs(parts.sample_min), abs(parts.sample_max))
        if not math.isfinite(extreme) or extreme > self.max_pixel:
            return Trip(
                step,
                f"sampled pixels in [{parts.sample_min:.3g}, {parts.sample_max:.3g}], "
                f"beyond +-{self.max_pixel:.3g}",
            )
        return None

    def check_validation(self, step: int, val_acc: float) -> Trip | None:
        if val_acc < self.best_val_acc - self.collapse_drop:
            return Trip(
                step,
                f"validation accuracy collapsed to {val_acc:.3f} from a best of "
                f"{self.best_val_acc:.3f}",
            )
        self.best_val_acc = max(self.best_val_acc, val_acc)
        return None
