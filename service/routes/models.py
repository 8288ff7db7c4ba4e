"""The model routes: the served models' listing, one model's description, and generation by
SGLD (JSON, or a labelled PNG grid).
"""

from __future__ import annotations

import asyncio
import threading
import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from PIL.Image import Image

from jem.imaging import labelled_grid
from service.errors import ServiceError
from service.images import encode_png, tensor_to_images
from service.predictor import Predictor
from service.route_common import ERROR_CONTENT, V1_OPTIONS, PredictorDep, RuntimeDep, json_response
from service.sampling import Generated
from service.schemas import (
    GenerateRequest,
    GenerateResponse,
    GenerationParameters,
    ModelInfo,
    ModelList,
)

__all__ = ["models_router"]

models_router = APIRouter(**V1_OPTIONS, tags=["models"])


@models_router.get("/models", response_model=ModelList, summary="The served models")
async def list_models(runtime: RuntimeDep) -> ModelList:
    return ModelList(
        models=[p.info(ready=runtime.ready) for _, p in sorted(runtime.predictors.items())]
    )


@models_router.get(
    "/models/{model}",
    response_model=ModelInfo,
    responses={
        404: {"description": "Unknown model.", **ERROR_CONTENT},
        503: {"description": "Not ready yet (Retry-After).", **ERROR_CONTENT},
    },
    summary="One model: classes, input spec, metrics, calibration, sampling defaults",
)
async def get_model(predictor: PredictorDep, runtime: RuntimeDep) -> ModelInfo:
    return predictor.info(ready=runtime.ready)


def _class_grid(predictor: Predictor, params: GenerationParameters, result: Generated) -> Image:
    """One labelled row per class: the requested class, or the predicted one if none was."""
    images = tensor_to_images(result.x, predictor.spec)
    if isinstance(params.label, list):
        classes = params.label
    elif params.label is not None:
        classes = [params.label] * len(images)
    else:
        classes = [sample.label for sample in result.samples]
    names = predictor.class_names
    rows = [
        (names[k], [im for im, c in zip(images, classes, strict=True) if c == k])
        for k in sorted(set(classes))
    ]
    return labelled_grid(rows)


def _wants_png(accept: str) -> bool:
    """`Accept: image/png` (listed before application/json when both are)."""
    png, json = accept.find("image/png"), accept.find("application/json")
    return png >= 0 and (json < 0 or png < json)


@models_router.post(
    "/models/{model}/generate",
    response_model=GenerateResponse,
    responses={
        200: {
            "content": {"image/png": {}},
            "description": "JSON, or a PNG grid for Accept: image/png.",
        },
        400: {
            "description": "A body that cannot be parsed (e.g. nested too deeply).",
            **ERROR_CONTENT,
        },
        404: {"description": "Unknown model (the message lists the served ones).", **ERROR_CONTENT},
        413: {"description": "Body too large.", **ERROR_CONTENT},
        422: {"description": "A parameter beyond its limit, unknown class, ...", **ERROR_CONTENT},
        429: {"description": "Generation pool full (Retry-After).", **ERROR_CONTENT},
        503: {"description": "Not ready, or shutting down (Retry-After).", **ERROR_CONTENT},
        504: {"description": "Time budget exceeded.", **ERROR_CONTENT},
    },
    summary="Sample images by SGLD on the model's energy (class-conditional with 'label')",
)
async def generate(
    body: GenerateRequest, request: Request, predictor: PredictorDep, runtime: RuntimeDep
) -> Response:
    m = runtime.metrics
    start = time.perf_counter()
    try:
        params = predictor.resolve_generation(body, runtime.limits)
        deadline = time.monotonic() + runtime.settings.generation_time_budget_s

        def on_steps(n: int) -> None:
            m.sgld_steps.labels(predictor.name).inc(n)

        stop = threading.Event()

        def run() -> Generated:
            return predictor.generate(params, deadline=deadline, on_steps=on_steps, stop=stop)

        try:
            result = await runtime.generation.run(run)
        except asyncio.CancelledError:
            stop.set()  # cancelled at shutdown: the thread stops instead of running to its budget
            raise
        finally:
            runtime.observe_device_memory()
    except ServiceError as exc:
        m.generation_requests.labels(predictor.name, exc.code).inc()
        raise
    except Exception:
        m.generation_requests.labels(predictor.name, "error").inc()
        raise
    elapsed = time.perf_counter() - start
    m.generation_requests.labels(predictor.name, "ok").inc()
    m.generation_duration.labels(predictor.name).observe(elapsed)
    if _wants_png(request.headers.get("accept", "")):
        grid = _class_grid(predictor, params, result)
        return Response(
            encode_png(grid),
            media_type="image/png",
            headers={"X-Seed": str(params.seed), "X-Duration-Ms": f"{elapsed * 1000:.1f}"},
        )
    response = GenerateResponse(
        model=predictor.name,
        version=predictor.version,
        parameters=params,
        samples=result.samples,
        duration_ms=round(elapsed * 1000, 3),
    )
    return json_response(response)
