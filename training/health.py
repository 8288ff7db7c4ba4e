"""Health figures of the generative part of a JEM, logged at every validation during training.

A JEM's classifier can look fine while its generative half learns nothing: the replay buffer stays
noise, the energy gap sits at a constant, and samples are class-coloured blobs. The progress bar's
loss does not show it. These figures do, each measured on a fixed slice of validation images and
of the replay buffer (no random draws, so the training run's random streams are left untouched):

``energy_data``, ``energy_buffer``, ``energy_noise``
    mean E(x) = -logsumexp f(x) of validation images, buffer chains and fixed uniform noise.
    Healthy: data lowest, noise highest, the buffer between them and moving towards the data;
    all well inside the divergence guard's bound (``guard_max_energy``).
``buffer_min``, ``buffer_max``, ``buffer_mean`` (and ``data_mean``)
    pixel range of the chains, in model units ([-1, 1]). Healthy: inside the data range, mean near
    the data's; chains stuck at the clamp bounds mean the step size is too large for the energy.
``noise_distance``
    how far the chains have moved from noise towards images, by roughness (mean absolute difference
    of neighbouring pixels, r): ``(r_noise - r_buffer) / (r_noise - r_data)``. 0: as rough as
    uniform noise; 1: as smooth as the data. Healthy: above 0.5 once the generative term has run
    a few hundred iterations; below :data:`NOISE_WARNING` the trainer warns that samples stay noise.
``judge_agreement``
    share of buffer chains that a pixel RBF-SVC judge (fitted on the train split, sharing no
    gradients with the model) labels as the model labels them. Chance is about 1/classes; healthy
    is well above it (0.5 or more means the chains look like their class to another classifier).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from jem import energy_from_logits
from training.judges import PixelSVCJudge

__all__ = ["NOISE_WARNING", "Health", "HealthMonitor", "near_chance", "never_starts", "roughness"]

NOISE_WARNING = 0.1  # noise_distance below this after WARN_AFTER generative steps: a warning
WARN_AFTER = 300
JUDGE_FIT_MAX = 2000  # training images the pixel judge is fitted on (evenly spaced)
PROBE = 256  # validation images and buffer chains per measurement


def never_starts(px_weight: float, px_start: int, iterations: int) -> str | None:
    """A warning when a JEM run ends before its generative term starts, else None.

    A preset's ``px_start`` (e.g. emoji-jem's 1,000) with a short ``iterations`` (a quick try)
    silently trains a softmax classifier: no chains, no health figures, ``px_warmup`` unused."""
    if px_weight <= 0 or px_start < iterations:
        return None
    return (
        f"px_start={px_start} >= iterations={iterations}: the generative term never starts, so"
        f" this run trains cross-entropy only; for a short JEM run lower px_start too"
        f" (e.g. --set px_start={iterations // 3})"
    )


def near_chance(step: int, total: int, val_accuracy: float, num_classes: int) -> str | None:
    """A warning when validation accuracy is still near chance (below 1.5 x 1/num_classes)
    once a fifth of the run (and at least 500 iterations) is done, else None: the classifier,
    and with it the JEM, is not learning these classes (the health figures of the generative
    part cannot show that: a JEM's chains can look like "their class" when the class does not
    exist in the data)."""
    chance = 1.0 / max(num_classes, 1)
    if step < max(500, total // 5) or val_accuracy >= 1.5 * chance:
        return None
    return (
        f"validation accuracy {val_accuracy:.2f} at step {step} is near chance ({chance:.2f} for "
        f"{num_classes} classes): the classifier is not learning these classes; see "
        "docs/your-data.md, 'When the classifier does not learn'"
    )


def roughness(x: Tensor) -> Tensor:
    """Mean |x[i] - x[i+1]| over horizontally and vertically adjacent pixels, per image: (N,)."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(dim=1)
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(dim=1)
    return (dh + dw) / 2


@dataclass(frozen=True)
class Health:
    step: int
    energy_data: float
    energy_buffer: float
    energy_noise: float
    buffer_min: float
    buffer_max: float
    buffer_mean: float
    data_mean: float
    noise_distance: float
    judge_agreement: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}

    def line(self) -> str:
        return (
            f"health step {self.step}: E data {self.energy_data:.2f} buffer "
            f"{self.energy_buffer:.2f} noise {self.energy_noise:.2f}; buffer pixels "
            f"[{self.buffer_min:.2f}, {self.buffer_max:.2f}] mean {self.buffer_mean:.2f} "
            f"(data {self.data_mean:.2f}); noise distance {self.noise_distance:.2f}; "
            f"judge agreement {self.judge_agreement:.2f}"
        )


class HealthMonitor:
    """Measures :class:`Health` from a model, its buffer chains and the train/val splits.

    ``x_train``/``y_train`` fit the pixel judge (lazily, on first use); ``x_val`` is the fixed
    probe of data. ``value_range`` is the data range (the noise probe is uniform over it).
    """

    def __init__(
        self,
        x_train: Tensor,
        y_train: Tensor,
        x_val: Tensor,
        value_range: tuple[float, float],
    ) -> None:
        stride = max(1, len(x_train) // JUDGE_FIT_MAX)  # an RBF-SVC on all of CIFAR is slow
        self.x_train, self.y_train = x_train[::stride], y_train[::stride]
        self.x_val = x_val[:PROBE]
        lo, hi = value_range
        # a fixed noise probe from its own generator: the trainer's streams are not touched
        gen = torch.Generator().manual_seed(0)
        self.noise = lo + (hi - lo) * torch.rand((len(self.x_val), *x_val.shape[1:]), generator=gen)
        self.judge: PixelSVCJudge | None = None
        self.history: list[Health] = []
        self.warnings: list[str] = []

    def _judge(self) -> PixelSVCJudge:
        if self.judge is None:
            self.judge = PixelSVCJudge().fit(self.x_train, self.y_train, split="train")
        return self.judge

    @torch.no_grad()
    def measure(self, step: int, model: nn.Module, chains: Tensor) -> Health:
        """Health at ``step``; ``chains`` (N, C, H, W) on the CPU: the probe is evenly spaced."""
        device = next(model.parameters()).device
        stride = max(1, len(chains) // PROBE)
        probe = chains[::stride][:PROBE].float()
        was_training = model.training
        model.eval()

        def energy(x: Tensor) -> tuple[Tensor, Tensor]:
            logits = model(x.to(device)).float().cpu()
            return energy_from_logits(logits), logits.argmax(dim=1)

        e_data, _ = energy(self.x_val)
        e_buffer, labels = energy(probe)
        e_noise, _ = energy(self.noise)
        model.train(was_training)
        r_noise, r_data = roughness(self.noise).mean(), roughness(self.x_val).mean()
        distance = (r_noise - roughness(probe).mean()) / (r_noise - r_data).clamp(min=1e-6)
        agreement = (self._judge().predict(probe) == labels).float().mean()
        health = Health(
            step=step,
            energy_data=float(e_data.mean()),
            energy_buffer=float(e_buffer.mean()),
            energy_noise=float(e_noise.mean()),
            buffer_min=float(probe.min()),
            buffer_max=float(probe.max()),
            buffer_mean=float(probe.mean()),
            data_mean=float(self.x_val.mean()),
            noise_distance=float(distance),
            judge_agreement=float(agreement),
        )
        self.history.append(health)
        return health

    def warning(self, health: Health, generative_steps: int) -> str | None:
        """A warning (once per run) when the chains are still noise after WARN_AFTER steps."""
        if self.warnings or generative_steps < WARN_AFTER or health.noise_distance >= NOISE_WARNING:
            return None
        message = (
            f"the generative part is not learning: after {generative_steps} generative steps the "
            f"replay buffer is still noise (noise distance {health.noise_distance:.2f} < "
            f"{NOISE_WARNING}; judge agreement {health.judge_agreement:.2f}). Samples will be "
            "noise or class-coloured blobs; see docs/training.md, 'Reading the health figures'"
        )
        self.warnings.append(message)
        return message

    def summary(self) -> dict[str, Any]:
        """For the manifest: every measurement and the warnings given."""
        return {"history": [h.to_dict() for h in self.history], "warnings": list(self.warnings)}
