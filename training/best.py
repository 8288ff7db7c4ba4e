"""A validation-chosen checkpoint: ship the weights of the run's best validation, not its last.

With ``load_best_model_at_end`` on (the name of Hugging Face ``Trainer``'s setting; Keras calls it
``ModelCheckpoint(save_best_only=True)``), every validation whose accuracy is at least the best so
far keeps a copy of the weights the run validates (the moving average's when ``ema_decay`` is on),
and the final version is made from that copy. Ties go to the later step (more training, the
same score). A JEM's candidates start once its generative terms are at full weight
(``px_start + px_warmup``): before that the weights are a plain classifier's. Training itself is
unchanged (the copy is taken after the step; nothing is drawn), so a run with it is the same run,
iterate for iterate, as one without. The replay buffer, the health history and the live weights
are the end of the run's; only the shipped weights (and everything measured on them: the final
validation and test accuracy, ``samples.png``) come from the chosen step.

The choice is made on the validation split, so the chosen step's validation accuracy is biased
upwards (the maximum of noisy figures); the manifest keeps every candidate's figure
(``training.selection``) so a reader can see by how much it beat the last step, and the test
split (read once, by ``evaluate``) is the unbiased figure. A checkpoint carries the best copy in
its training state (``best.<name>`` tensors), so a resumed run chooses as an uninterrupted one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

__all__ = ["BEST_PREFIX", "BestWeights", "candidates_from"]

log = logging.getLogger("training")

BEST_PREFIX = "best."  # training-state tensors holding the best validation's weights


def candidates_from(px_weight: float, px_start: int, px_warmup: int) -> int:
    """The first step whose validation may be chosen: 0, or a JEM's full-weight start."""
    return px_start + px_warmup if px_weight > 0 else 0


@dataclass
class BestWeights:
    """The best validation so far (``step`` -1: none yet) and a CPU copy of its weights.

    ``first_step``: validations before this step are recorded but never chosen.
    """

    first_step: int
    step: int = -1
    accuracy: float = -1.0
    weights: dict[str, Tensor] = field(default_factory=dict)
    history: list[tuple[int, float]] = field(default_factory=list)  # (step, val accuracy)

    def consider(self, step: int, accuracy: float, module: nn.Module) -> bool:
        """Record a validation of ``module`` at ``step``; keep its weights when it is the best."""
        self.history.append((step, accuracy))
        if step < self.first_step or accuracy < self.accuracy:
            return False
        self.step, self.accuracy = step, accuracy
        self.weights = {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}
        return True

    def load_into(self, module: nn.Module) -> bool:
        """Put the chosen weights into ``module``; False (unchanged) when nothing was chosen."""
        if self.step < 0:
            return False
        module.load_state_dict(self.weights)
        return True

    def finish(self, module: nn.Module, last_step: int) -> None:
        """At the end of the run: put the chosen weights into ``module`` and log the choice."""
        if not self.load_into(module):
            log.warning(
                "load_best_model_at_end: no validation at or after step %d (px_start + "
                "px_warmup); the last weights are kept",
                self.first_step,
            )
            return
        last = self.record(last_step)["last_val_accuracy"]
        log.info(
            "load_best_model_at_end: shipping step %d's weights (val acc %.4f; step %d's: %s)",
            self.step,
            self.accuracy,
            last_step,
            "-" if last is None else f"{last:.4f}",
        )

    def record(self, last_step: int) -> dict[str, Any]:
        """The manifest's ``training.selection``: which step was shipped, and against what."""
        last = [acc for step, acc in self.history if step == last_step]
        return {
            "rule": "best validation accuracy (load_best_model_at_end; ties: the later step)",
            "candidates_from_step": self.first_step,
            "chosen_step": self.step if self.step >= 0 else last_step,
            "chosen_val_accuracy": self.accuracy if self.step >= 0 else None,
            "last_step": last_step,
            "last_val_accuracy": last[-1] if last else None,
            "validations": [[step, acc] for step, acc in self.history],
        }

    # ------------------------------------------------------------------ checkpoints

    def tensors(self) -> dict[str, Tensor]:
        """The best copy as training-state tensors (empty before the first candidate)."""
        return {BEST_PREFIX + k: v.contiguous() for k, v in self.weights.items()}

    def meta(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "accuracy": self.accuracy,
            "history": [list(item) for item in self.history],
        }

    def restore(self, tensors: dict[str, Tensor], meta: dict[str, Any] | None) -> None:
        """Continue from a checkpoint's copy; a checkpoint without one starts the choice afresh."""
        if meta is None:
            return
        self.step, self.accuracy = int(meta["step"]), float(meta["accuracy"])
        self.history = [(int(s), float(a)) for s, a in meta["history"]]
        n = len(BEST_PREFIX)
        self.weights = {k[n:]: v.clone() for k, v in tensors.items() if k.startswith(BEST_PREFIX)}
