"""The Predictor: one loaded model and everything the service asks of it. No HTTP here.

Classification, OOD verdicts and model info are here; generation by SGLD (its parameters, the
chains' start, the run under a time budget) is in service/sampling.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch

from jem import ClassGaussianInit, InputSpec, MixedInit, energy_from_logits, init_from_state_dict
from jem.ood import grad_norm_score, max_softmax_from_logits
from model_store import LoadedModel, ScoreCalibration
from service import sampling
from service.device import Placement
from service.sampling import Generated, GenerationLimits
from service.schemas import (
    GenerateRequest,
    GenerationParameters,
    ModelInfo,
    OODResult,
    ScoreVerdict,
)

__all__ = ["Predictor"]

Outputs = dict[str, torch.Tensor]


class Predictor:
    """Owns a `LoadedModel` and its calibration; classify / OOD / generate run on tensors.

    The model runs on `placement.device` (load it there: `ModelStore.load(device=...)`);
    the batch methods take and return CPU tensors, one copy each way per batch.
    """

    def __init__(self, loaded: LoadedModel, placement: Placement | None = None) -> None:
        self.loaded = loaded
        self.placement = placement if placement is not None else Placement(torch.device("cpu"))
        self.model = loaded.model.to(self.placement.device).eval()
        # A serving model never trains: parameters stay frozen, so concurrent gradient paths
        # (grad-norm, SGLD) that save and restore requires_grad cannot race each other.
        self.model.requires_grad_(False)
        manifest = loaded.manifest
        self.name = manifest.name
        self.version = manifest.version
        self.backbone = manifest.backbone.name
        self.spec: InputSpec = loaded.input_spec
        self.class_names = list(manifest.class_names)
        calibration = manifest.calibration
        self.calibrated = calibration is not None
        self.temperature = float(calibration.temperature) if calibration is not None else 1.0
        self.scores: dict[str, ScoreCalibration] = dict(calibration.scores) if calibration else {}
        buffer = loaded.buffer
        # the chains stay on the CPU, where the seeded CPU generator picks them
        self.buffer_x = buffer["x"].float().cpu() if buffer and "x" in buffer else None
        starts = buffer["starts"].long().cpu() if buffer and "starts" in buffer else None
        self.buffer_starts = starts
        # JEM++'s per-class Gaussians (the buffer's restart distribution), for init "gaussian"
        self.gaussian: ClassGaussianInit | None = None
        init_state = {k[5:]: v.cpu() for k, v in (buffer or {}).items() if k.startswith("init.")}
        if init_state:
            init = init_from_state_dict(init_state)
            if isinstance(init, MixedInit):  # its Gaussian part: generation's "gaussian" start
                init = init.gaussian
            if isinstance(init, ClassGaussianInit) and init.shape == self.spec.shape:
                self.gaussian = init

    # ---- classification and OOD -----------------------------------------------------------

    def classify_batch(self, x: torch.Tensor) -> Outputs:
        """Logits, calibrated probabilities, energy and max-softmax score for a CPU batch.

        Raises DeviceOutOfMemory (503) when the device cannot hold the batch.
        """
        placement = self.placement
        with placement.out_of_memory_guard():
            return placement.to_host(self.classify_on_device(placement.to_device(x)))

    def classify_on_device(self, x: torch.Tensor) -> Outputs:
        """classify_batch on a batch already on the device; outputs stay there."""
        with torch.inference_mode():
            with self.placement.autocast():
                logits = self.model(x)
            logits = logits.float()  # bf16 autocast: softmax and energies in float32
            probs = torch.softmax(logits / self.temperature, dim=-1)
            return {
                "logits": logits,
                "probs": probs,
                "energy": energy_from_logits(logits),
                "max_softmax": max_softmax_from_logits(logits, self.temperature),
            }

    def grad_batch(self, x: torch.Tensor) -> Outputs:
        """||grad_x log p(x)||: autograd on, parameter gradients off (see jem.ood)."""
        placement = self.placement
        with placement.out_of_memory_guard():
            with placement.autocast():
                norms = grad_norm_score(self.model, placement.to_device(x))
            return placement.to_host({"grad_norm": norms.float()})

    def verdict(self, score: str, value: float) -> ScoreVerdict:
        # model_construct: the values come from our own tensors and manifest, already of the
        # declared types; validating 64 images x (1 + k + scores) objects was part of the fifth
        # of a 64-image request's py-spy samples that went to the response (docs/benchmarks.md)
        return ScoreVerdict.model_construct(**self.verdict_fields(score, value))

    def verdict_fields(self, score: str, value: float) -> dict[str, Any]:
        """A `schemas.ScoreVerdict`'s fields, in its order, as a plain dict."""
        cal = self.scores.get(score)
        if cal is None:
            return {"score": value, "threshold": None, "flagged": None, "percentile": None}
        return {
            "score": value,
            "threshold": cal.threshold,
            "flagged": cal.is_ood(value),
            "percentile": round(cal.percentile(value), 3),
        }

    def predictions(self, out: Outputs, grad: Outputs | None, top_k: int) -> list[dict[str, Any]]:
        """One `schemas.Prediction`-shaped dict per image, in its field order.

        Plain dicts, serialised by pydantic's core (`pydantic_core.to_json`) as the models
        would be: building 64 x (2 + k) models, even by `model_construct`, was about a tenth of
        a 64-image request's CPU time (py-spy, docs/benchmarks-peers.md).
        """
        k = min(top_k, len(self.class_names))
        top_p, top_i = out["probs"].topk(k, dim=-1)
        # whole tensors to Python lists once: indexing a tensor per image costs a dispatch each
        probs, labels = top_p.tolist(), top_i.tolist()
        energies = out["energy"].tolist()
        grad_norms = grad["grad_norm"].tolist() if grad is not None else None
        names = self.class_names
        results = []
        for i, (p_i, l_i, energy) in enumerate(zip(probs, labels, energies, strict=True)):
            ood = {"energy": self.verdict_fields("energy", energy)}
            if grad_norms is not None:
                ood["grad_norm"] = self.verdict_fields("grad_norm", grad_norms[i])
            results.append(
                {
                    "index": i,
                    "label": l_i[0],
                    "class_name": names[l_i[0]],
                    "confidence": p_i[0],
                    "top_k": [
                        {"label": j, "class_name": names[j], "probability": p}
                        for j, p in zip(l_i, p_i, strict=True)
                    ],
                    "energy": energy,
                    "ood": ood,
                }
            )
        return results

    def ood_results(self, out: Outputs, grad: Outputs) -> list[OODResult]:
        labels = out["probs"].argmax(dim=-1).tolist()
        columns = zip(
            out["energy"].tolist(),
            grad["grad_norm"].tolist(),
            out["max_softmax"].tolist(),
            strict=True,
        )
        results = []
        for i, (label, (energy, grad_norm, max_softmax)) in enumerate(
            zip(labels, columns, strict=True)
        ):
            scores = {
                "energy": self.verdict("energy", energy),
                "grad_norm": self.verdict("grad_norm", grad_norm),
                "max_softmax": self.verdict("max_softmax", max_softmax),
            }
            flagged_by = self._combined(scores)
            combined = bool(flagged_by) if self.scores else None
            results.append(
                OODResult.model_construct(
                    index=i,
                    scores=scores,
                    flagged=combined,
                    flagged_by=flagged_by,
                    label=label,
                    class_name=self.class_names[label],
                )
            )
        return results

    def _combined(self, verdicts: dict[str, ScoreVerdict]) -> list[str]:
        """Scores beyond their in-distribution (1 - alpha / k) quantile, alpha = 1 - target_tpr.

        Any one of k scores alone would flag about alpha of genuine inputs; asking each for
        alpha / k (Bonferroni) keeps the combined false-alarm rate at most about alpha, while a
        score that is blind to some kind of OOD input (max-softmax on noise) cannot veto the
        others, as it could in a majority vote.
        """
        calibrated = {n: v for n, v in verdicts.items() if v.percentile is not None}
        k = len(calibrated)
        out = []
        for name, verdict in calibrated.items():
            alpha = 1.0 - self.scores[name].target_tpr
            if verdict.percentile is not None and verdict.percentile > 100.0 * (1.0 - alpha / k):
                out.append(name)
        return out

    def warmup(self) -> None:
        """A test forward pass on both paths; raises ValueError when the outputs are unusable."""
        x = torch.zeros((2, *self.spec.shape))
        out = self.classify_batch(x)
        grad = self.grad_batch(x)
        if tuple(out["logits"].shape) != (2, len(self.class_names)):
            raise ValueError(
                f"test forward pass gave logits of shape {list(out['logits'].shape)}, "
                f"expected [2, {len(self.class_names)}] (one per class name)"
            )
        if not (torch.isfinite(out["logits"]).all() and torch.isfinite(grad["grad_norm"]).all()):
            raise ValueError("test forward pass gave NaN or infinite outputs: broken weights")

    def info(self, *, ready: bool) -> ModelInfo:
        m = self.loaded.manifest
        calibration = m.calibration.model_dump(mode="json") if m.calibration else None
        return ModelInfo(
            name=self.name,
            version=self.version,
            ref=f"{self.name}:{self.version}",
            backbone=m.backbone.model_dump(mode="json"),
            input_spec=self.spec.to_dict(),
            class_names=self.class_names,
            created_at=m.created_at.isoformat(),
            code_version=m.code_version.model_dump(mode="json"),
            training=dict(m.training),
            metrics=dict(m.metrics),
            calibration=calibration,
            sampling=m.sampling.model_dump(mode="json") if m.sampling else None,
            has_replay_buffer=self.buffer_x is not None,
            ready=ready,
            **self.placement.describe(),
        )

    # ---- generation (service/sampling.py) ------------------------------------------------

    def resolve_generation(
        self, request: GenerateRequest, limits: GenerationLimits
    ) -> GenerationParameters:
        """Fill defaults from the manifest's sampling settings and check every limit."""
        return sampling.resolve_generation(self, request, limits)

    def generate(
        self,
        params: GenerationParameters,
        *,
        deadline: float,
        on_steps: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> Generated:
        """Run SGLD (seeded) and describe each sample. Runs in a worker thread.

        The chains' start is drawn on the CPU from the seed; the SGLD noise comes from the same
        CPU generator on a CPU device (bit-exact across runs, as the training sampler), and from
        a CUDA generator seeded alike on a CUDA device (the same seed gives the same samples up
        to the non-determinism of cuDNN's backward kernels: docs/deployment.md states the
        tolerance). `deadline` is a `time.monotonic()` value; past it, GenerationTimeout is
        raised. Once `stop` is set (the request was cancelled), NotReady is raised within
        10 steps. A device out-of-memory error raises DeviceOutOfMemory (503).
        """
        with self.placement.out_of_memory_guard():
            return sampling.generate(self, params, deadline, on_steps, stop)
