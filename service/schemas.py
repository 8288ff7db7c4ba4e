"""Request and response bodies of the HTTP API (pydantic; shown on the OpenAPI page)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ClassProbability",
    "GenerateRequest",
    "GenerateResponse",
    "GeneratedSample",
    "GenerationParameters",
    "ModelInfo",
    "ModelList",
    "OODResponse",
    "OODResult",
    "PredictJSON",
    "PredictResponse",
    "Prediction",
    "ReloadRequest",
    "ReloadResponse",
    "ScoreVerdict",
    "Timing",
]


class _Out(BaseModel):
    model_config = ConfigDict(protected_namespaces=())


class PredictJSON(BaseModel):
    """JSON input: base64 image files, or pixel arrays in the model's input shape."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"images": ["iVBORw0KGgoAAAANSUhEUgAAAAgAAAAI..."]},
                {"pixels": [[[-1.0] * 8] * 8], "pixel_format": "float"},
            ]
        },
    )

    images: list[str] | None = Field(
        default=None, description="Base64 PNG/JPEG/BMP/GIF/TIFF/WebP files (data: URLs accepted)."
    )
    pixels: list[Any] | None = Field(
        default=None,
        description="Images as nested arrays of shape (C, H, W) (or (H, W) for one channel).",
    )
    pixel_format: Literal["float", "uint8"] = Field(
        default="float",
        description="'float': values in the model's value range, [-1, 1]; "
        "'uint8': integers 0..255.",
    )


class ScoreVerdict(_Out):
    score: float = Field(description="Higher = more likely out-of-distribution.")
    threshold: float | None = Field(
        description="Calibrated threshold (target_tpr of held-out in-distribution inputs pass); "
        "null when the model has no calibration."
    )
    flagged: bool | None = Field(description="score > threshold; null when uncalibrated.")
    percentile: float | None = Field(
        description="Percentile (0-100) of the score among held-out in-distribution inputs."
    )


class ClassProbability(_Out):
    label: int
    class_name: str
    probability: float


class Timing(_Out):
    queue_ms: float
    compute_ms: float
    batch_size: int = Field(description="Images in the forward pass this request shared.")


class Prediction(_Out):
    index: int
    label: int
    class_name: str
    confidence: float = Field(description="Calibrated p(label | x) = softmax(logits / T).")
    top_k: list[ClassProbability]
    energy: float = Field(description="E(x) = -logsumexp(logits); higher = less likely.")
    ood: dict[str, ScoreVerdict] = Field(
        description="'energy' always; 'grad_norm' too with ?ood=full."
    )


class PredictResponse(_Out):
    model_config = ConfigDict(
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                {
                    "model": "digits-jem",
                    "version": 1,
                    "calibrated": True,
                    "temperature": 1.02,
                    "predictions": [
                        {
                            "index": 0,
                            "label": 4,
                            "class_name": "4",
                            "confidence": 0.999,
                            "top_k": [{"label": 4, "class_name": "4", "probability": 0.999}],
                            "energy": -14.7,
                            "ood": {
                                "energy": {
                                    "score": -14.7,
                                    "threshold": -6.0,
                                    "flagged": False,
                                    "percentile": 5.5,
                                }
                            },
                        }
                    ],
                    "timing": {"queue_ms": 1.2, "compute_ms": 1.7, "batch_size": 3},
                }
            ]
        },
    )

    model: str
    version: int
    calibrated: bool = Field(description="False: T = 1 and OOD thresholds are null.")
    temperature: float
    predictions: list[Prediction]
    timing: Timing


class OODResult(_Out):
    index: int
    scores: dict[str, ScoreVerdict] = Field(
        description="energy: E(x); grad_norm: ||grad_x log p(x)||; max_softmax: 1 - max p(y|x). "
        "Every score: higher = more likely out-of-distribution."
    )
    flagged: bool | None = Field(
        description="Combined verdict: some calibrated score lies beyond its in-distribution "
        "(1 - 0.05 / k) quantile for k scores, so at most ~5% of in-distribution inputs are "
        "flagged overall; null when the model has no calibration."
    )
    flagged_by: list[str] = Field(description="The scores past that combined cut.")
    label: int
    class_name: str


class OODResponse(_Out):
    model: str
    version: int
    calibrated: bool
    results: list[OODResult]
    timing: Timing


class ModelInfo(_Out):
    name: str
    version: int
    ref: str
    backbone: dict[str, Any]
    input_spec: dict[str, Any]
    class_names: list[str]
    created_at: str
    code_version: dict[str, Any]
    training: dict[str, Any]
    metrics: dict[str, Any]
    calibration: dict[str, Any] | None
    sampling: dict[str, Any] | None
    has_replay_buffer: bool
    ready: bool
    device: str = Field(description="Where the model runs: cpu, cuda:0, ... (JEM_DEVICE).")
    precision: str = Field(description="fp32, or bf16 autocast on CUDA (JEM_PRECISION).")


class ModelList(_Out):
    models: list[ModelInfo]


class ReloadRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"ref": "digits-jem:4"}]}
    )

    ref: str | None = Field(
        default=None,
        max_length=200,
        description="The version to serve: 'name', 'name:4' or 'name:alias' of the same model. "
        "Default: the reference the service started with (JEM_MODELS), resolved again.",
    )


class ReloadResponse(_Out):
    model: str
    version: int
    previous_version: int
    ref: str
    load_ms: float


class GenerateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"num_samples": 4, "label": "3", "seed": 0}]},
    )

    num_samples: int = Field(default=8, ge=1, description="Limit: JEM_GENERATION_MAX_SAMPLES.")
    label: int | str | list[int | str] | None = Field(
        default=None,
        description="Class index or class name (or a list, one per sample); "
        "null samples p(x) unconditionally.",
    )
    steps: int | None = Field(
        default=None,
        ge=0,
        description="Default: the manifest's sampling.steps from noise; the training chain "
        "length from the buffer.",
    )
    step_size: float | None = Field(default=None, ge=0.0)
    noise_std: float | None = Field(default=None, ge=0.0)
    init: Literal["noise", "buffer", "gaussian"] | None = Field(
        default=None,
        description="'noise' (uniform on the value range; default), 'buffer' (chains from "
        "the checkpoint's replay buffer, from the class's slice when a label is given) or "
        "'gaussian' (JEM++: the per-class Gaussians the model was trained from; models whose "
        "manifest has sampling.init 'gaussian').",
    )
    seed: int | None = Field(
        default=None, ge=0, lt=2**63, description="Same seed and parameters -> same images."
    )


class GenerationParameters(_Out):
    num_samples: int
    label: int | list[int] | None
    class_name: str | list[str] | None
    steps: int
    step_size: float
    noise_std: float
    clamp: tuple[float, float] | None
    init: Literal["noise", "buffer", "gaussian"]
    seed: int


class GeneratedSample(_Out):
    png_base64: str
    label: int = Field(description="The class the model predicts for the sample.")
    class_name: str
    confidence: float
    energy: float


class GenerateResponse(_Out):
    model: str
    version: int
    parameters: GenerationParameters
    samples: list[GeneratedSample]
    duration_ms: float
