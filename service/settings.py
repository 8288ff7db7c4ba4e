"""Service configuration: every knob is an environment variable with the `JEM_` prefix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from PIL import Image
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from model_store import InvalidModelName
from model_store.names import parse_ref

__all__ = ["Settings", "misspelt_variables"]

# Pillow warns (and refuses beyond twice this) while *opening* a larger image: our own limit
# must stay below it so that every such image is refused by our check, with our message.
_PILLOW_BOMB_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
# '' or '/prefix' (no trailing slash, no spaces): JEM_ROOT_PATH and --root-path
ROOT_PATH_PATTERN = r"^(/\S*[^/\s])?$"


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Settings read from `JEM_*` environment variables (e.g. `JEM_MAX_BATCH_SIZE=64`).

    Lists (`JEM_MODELS`, `JEM_API_KEYS`) are comma-separated.
    """

    model_config = SettingsConfigDict(env_prefix="JEM_", extra="ignore", frozen=True)

    # Models
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["digits-jem", "emoji-jem"],
        description="Model refs to serve: 'name', 'name:3' or 'name:alias'.",
    )
    model_store: Path | None = Field(
        default=None, description="Store root; default <repo>/model_store/models."
    )
    verify_checksums: bool = True
    exit_on_load_error: bool = Field(
        default=True,
        description="Check every model (found, checksums) before listening; a failure ends "
        "the process (exit 3). False: stay up, unready, the reason on /readyz.",
    )
    warmup: bool = True

    # Device (service/device.py)
    device: str = Field(
        default="auto",
        pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$",
        description="auto (CUDA when visible, else CPU), cpu, cuda or cuda:N.",
    )
    precision: Literal["fp32", "bf16"] = Field(
        default="fp32", description="bf16: torch.autocast on CUDA only (a startup error on CPU)."
    )

    # Auth
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Bearer keys for /v1; empty = no auth."
    )

    # Micro-batching of predict / ood
    max_batch_size: int = Field(default=32, ge=1, le=4096)
    max_wait_ms: float = Field(default=5.0, ge=0.0, le=1000.0)
    queue_size: int = Field(default=256, ge=1, description="Waiting requests per model.")
    request_timeout_s: float = Field(default=10.0, gt=0.0)
    retry_after_s: int = Field(default=1, ge=1)
    grad_max_batch_size: int = Field(default=16, ge=1, le=4096)

    # Request limits
    max_images_per_request: int = Field(default=64, ge=1)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_header_bytes: int = Field(
        default=16 * 1024, ge=1024, description="Request line + headers; 431 beyond."
    )
    max_image_pixels: int = Field(
        default=4_000_000,
        ge=1,
        le=_PILLOW_BOMB_PIXELS,
        description="Pixels of one decoded upload (at most Pillow's decompression-bomb limit).",
    )
    max_top_k: int = Field(default=10, ge=1)

    # Generation (SGLD)
    generation_max_samples: int = Field(default=100, ge=1)
    generation_max_steps: int = Field(default=2000, ge=1)
    generation_max_step_size: float = Field(default=10.0, gt=0.0)
    generation_max_noise_std: float = Field(default=1.0, ge=0.0)
    generation_time_budget_s: float = Field(default=60.0, gt=0.0)
    generation_concurrency: int = Field(default=1, ge=1)
    generation_queue_size: int = Field(default=2, ge=0, description="Waiting generations.")

    # Process (python -m service; command-line flags override these)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    limit_concurrency: int = Field(
        default=512, ge=1, description="Requests in progress before 503 (probes exempt)."
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0.0, le=300.0, description="Request line + headers must arrive within."
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0.0, le=3600.0, description="A request body must arrive within; 408."
    )
    timeout_keep_alive_s: int = Field(default=5, ge=1)
    graceful_shutdown_s: int = Field(default=30, ge=1, description="Drain time on SIGTERM.")
    worker_healthcheck_timeout_s: int = Field(
        default=60, ge=1, description="--workers: a worker silent this long is restarted."
    )
    root_path: str = Field(
        default="",
        pattern=ROOT_PATH_PATTERN,
        description="Path prefix that a proxy in front strips, e.g. '/jem' (uvicorn --root-path).",
    )
    torch_threads: int | None = Field(default=None, ge=1)
    grpc_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Open Inference Protocol gRPC port; unset = off (needs the grpc extra).",
    )
    grpc_host: str | None = Field(default=None, description="gRPC bind address; default JEM_HOST.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", description="Python logging level, any case (e.g. debug, INFO)."
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("models", "api_keys", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if not self.models:
            raise ValueError("JEM_MODELS must name at least one model, e.g. 'digits-jem'")
        names = []
        for ref in self.models:  # the form only; whether the store has it is checked at startup
            try:
                names.append(parse_ref(ref)[0])
            except InvalidModelName as exc:
                raise ValueError(f"JEM_MODELS: {exc}") from None
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:  # requests route by name: a second version of a name would silently win
            refs = ", ".join(
                ref for ref, name in zip(self.models, names, strict=True) if name in twice
            )
            raise ValueError(
                f"JEM_MODELS names {', '.join(twice)} more than once ({refs}); the service "
                "serves one version per model name: keep one reference for each"
            )
        return self

    def api_key_bytes(self) -> list[bytes]:
        return [key.get_secret_value().encode() for key in self.api_keys]


def misspelt_variables(names: Iterable[str]) -> list[str]:
    """A hint for each `JEM_*` variable in `names` that is no setting but close to one (a
    likely typo, which pydantic-settings would ignore without a word); other JEM_ variables
    (the deployment's own, such as JEM_IMAGE) pass unremarked."""
    known = [f"JEM_{field.upper()}" for field in Settings.model_fields]
    hints = []
    for name in sorted(names):
        if not name.startswith("JEM_") or name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
        if close:
            hints.append(f"{name} is not a setting and is ignored: did you mean {close[0]}?")
    return hints
