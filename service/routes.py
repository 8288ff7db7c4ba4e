"""HTTP routes: thin; the work happens in Runtime, Predictor and the batchers.

What the routes share (dependencies, documented errors and bodies, JSON responses) is in
service/route_common.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from PIL.Image import Image
from pydantic_core import to_json

from jem.imaging import labelled_grid
from service.errors import AdminDisabled, InvalidParameters, ServiceError, error_body
from service.images import encode_png, tensor_to_images
from service.inputs import read_batch
from service.lean_route import LeanRoute, choice, lean, plain_bool, positive_int
from service.metrics import CONTENT_TYPE_LATEST
from service.predictor import Predictor
from service.route_common import (
    _ERROR,
    _IMAGE_BODY,
    _INPUT_ERRORS,
    _V1,
    NormalizeQuery,
    PredictorDep,
    RuntimeDep,
    _json,
    _spec,
    _timing,
)
from service.runtime import Runtime
from service.sampling import Generated
from service.schemas import (
    GenerateRequest,
    GenerateResponse,
    GenerationParameters,
    ModelInfo,
    ModelList,
    OODResponse,
    PredictResponse,
    ReloadRequest,
    ReloadResponse,
)

__all__ = ["admin_router", "ops_router", "v1_router"]


# Two routers, one tag each: FastAPI adds a route's tags to its router's, and Swagger UI lists
# an operation once under every tag it has.
v1_router = APIRouter(**_V1, tags=["models"], route_class=LeanRoute)
admin_router = APIRouter(**_V1, tags=["admin"])
ops_router = APIRouter(tags=["operations"])


@v1_router.post(
    "/models/{model}/predict",
    response_model=PredictResponse,
    responses=_INPUT_ERRORS,
    openapi_extra=_IMAGE_BODY,
    summary="Classify images: label, calibrated confidence, top-k, energy and OOD verdict",
)
@lean(ood=choice("energy", "full"), top_k=positive_int, normalize=plain_bool)
async def predict(
    request: Request,
    predictor: PredictorDep,
    ood: Annotated[
        Literal["energy", "full"], Query(description="'full' adds the grad-norm score.")
    ] = "energy",
    top_k: Annotated[int, Query(ge=1, description="Classes listed per image.")] = 3,
    normalize: NormalizeQuery = True,
) -> Response:
    runtime: Runtime = request.app.state.runtime  # as get_runtime, without a dependency
    if top_k > runtime.settings.max_top_k:
        raise InvalidParameters(f"top_k {top_k} > {runtime.settings.max_top_k} (JEM_MAX_TOP_K)")
    x = await read_batch(request, _spec(predictor, normalize), runtime.settings)
    if ood == "full":
        (out, t1), (grad, t2) = await asyncio.gather(
            runtime.classify(predictor, x), runtime.grad(predictor, x)
        )
        timing = _timing(t1, t2)
    else:
        out, t1 = await runtime.classify(predictor, x)
        grad, timing = None, _timing(t1)
    predictions = predictor.predictions(out, grad, top_k)
    verdicts = {
        score: (
            [p["ood"][score]["score"] for p in predictions],
            [p["ood"][score]["flagged"] for p in predictions],
        )
        for score in predictions[0]["ood"]
    }
    runtime.observe(predictor.name, [p["energy"] for p in predictions], verdicts)
    # PredictResponse's fields, in its order (tests/service/test_predict.py checks the two agree)
    body = {
        "model": predictor.name,
        "version": predictor.version,
        "calibrated": predictor.calibrated,
        "temperature": predictor.temperature,
        "predictions": predictions,
        "timing": timing,
    }
    return Response(to_json(body, inf_nan_mode="null"), media_type="application/json")


@v1_router.post(
    "/models/{model}/ood",
    response_model=OODResponse,
    responses=_INPUT_ERRORS,
    openapi_extra=_IMAGE_BODY,
    summary="Every OOD score (higher = more likely out-of-distribution) and a combined verdict",
)
@lean(normalize=plain_bool)
async def ood(
    request: Request, predictor: PredictorDep, normalize: NormalizeQuery = True
) -> Response:
    runtime: Runtime = request.app.state.runtime
    x = await read_batch(request, _spec(predictor, normalize), runtime.settings)
    (out, t1), (grad, t2) = await asyncio.gather(
        runtime.classify(predictor, x), runtime.grad(predictor, x)
    )
    results = predictor.ood_results(out, grad)
    verdicts = {
        score: (
            [r.scores[score].score for r in results],
            [r.scores[score].flagged for r in results],
        )
        for score in results[0].scores
    }
    runtime.observe(predictor.name, [r.scores["energy"].score for r in results], verdicts)
    return _json(
        OODResponse(
            model=predictor.name,
            version=predictor.version,
            calibrated=predictor.calibrated,
            results=results,
            timing=_timing(t1, t2),
        )
    )


@v1_router.get("/models", response_model=ModelList, summary="The served models")
async def list_models(runtime: RuntimeDep) -> ModelList:
    return ModelList(
        models=[p.info(ready=runtime.ready) for _, p in sorted(runtime.predictors.items())]
    )


@v1_router.get(
    "/models/{model}",
    response_model=ModelInfo,
    responses={
        404: {"description": "Unknown model.", **_ERROR},
        503: {"description": "Not ready yet (Retry-After).", **_ERROR},
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


@v1_router.post(
    "/models/{model}/generate",
    response_model=GenerateResponse,
    responses={
        200: {
            "content": {"image/png": {}},
            "description": "JSON, or a PNG grid for Accept: image/png.",
        },
        400: {"description": "A body that cannot be parsed (e.g. nested too deeply).", **_ERROR},
        404: {"description": "Unknown model (the message lists the served ones).", **_ERROR},
        413: {"description": "Body too large.", **_ERROR},
        422: {"description": "A parameter beyond its limit, unknown class, ...", **_ERROR},
        429: {"description": "Generation pool full (Retry-After).", **_ERROR},
        503: {"description": "Not ready, or shutting down (Retry-After).", **_ERROR},
        504: {"description": "Time budget exceeded.", **_ERROR},
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

        def run() -> Generated:
            return predictor.generate(params, deadline=deadline, on_steps=on_steps)

        try:
            result = await runtime.generation.run(run)
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
    return _json(response)


@admin_router.post(
    "/admin/models/{model}/reload",
    response_model=ReloadResponse,
    responses={
        403: {"description": "Wrong API key, or no JEM_API_KEYS configured.", **_ERROR},
        404: {"description": "Unknown model or version.", **_ERROR},
        409: {
            "description": "The new version failed verification; the old one serves on.",
            **_ERROR,
        },
        422: {"description": "A ref of another model, or not a valid reference.", **_ERROR},
        503: {"description": "Not ready yet.", **_ERROR},
    },
    summary="Swap in another version of a served model, after checksums and a test forward pass",
)
async def reload_model(
    model: str, runtime: RuntimeDep, body: ReloadRequest | None = None
) -> ReloadResponse:
    if not runtime.settings.api_keys:
        raise AdminDisabled(
            "admin routes need API keys: set JEM_API_KEYS and send 'Authorization: Bearer <key>'"
        )
    start = time.perf_counter()
    old, new = await runtime.reload(model, body.ref if body is not None else None)
    return ReloadResponse(
        model=new.name,
        version=new.version,
        previous_version=old.version,
        ref=f"{new.name}:{new.version}",
        load_ms=round((time.perf_counter() - start) * 1000, 3),
    )


@ops_router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@ops_router.get(
    "/readyz",
    summary="Readiness: models loaded, verified and warm",
    responses={503: {"description": "Not ready, with the reason.", **_ERROR}},
)
async def readyz(runtime: RuntimeDep) -> Response:
    if not runtime.ready:
        return JSONResponse(error_body("not_ready", runtime.reason), status_code=503)
    return JSONResponse({"status": "ready", "models": sorted(runtime.predictors)})


@ops_router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(runtime: RuntimeDep) -> Response:
    runtime.observe_device_memory()
    return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
