"""The classification routes: predict (label, confidence, top-k, energy, OOD verdict) and ood
(every OOD score). Both read images through service.inputs and take the lean path for plain
requests (service/lean_route.py).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic_core import to_json

from service.errors import InvalidParameters
from service.inputs import read_batch
from service.lean_route import LeanRoute, choice, lean, plain_bool, positive_int
from service.route_common import (
    IMAGE_BODY,
    INPUT_ERRORS,
    V1_OPTIONS,
    NormalizeQuery,
    PredictorDep,
    input_spec,
    json_response,
    timing_of,
)
from service.runtime import COMBINED, Runtime
from service.schemas import OODResponse, PredictResponse

__all__ = ["classify_router"]

classify_router = APIRouter(**V1_OPTIONS, tags=["models"], route_class=LeanRoute)


@classify_router.post(
    "/models/{model}/predict",
    response_model=PredictResponse,
    responses=INPUT_ERRORS,
    openapi_extra=IMAGE_BODY,
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
    x = await read_batch(request, input_spec(predictor, normalize), runtime.settings)
    if ood == "full":
        (out, t1), (grad, t2) = await asyncio.gather(
            runtime.classify(predictor, x), runtime.grad(predictor, x)
        )
        timing = timing_of(t1, t2)
    else:
        out, t1 = await runtime.classify(predictor, x)
        grad, timing = None, timing_of(t1)
    predictions = predictor.predictions(out, grad, top_k)
    returned = predictions[0]["ood"]  # energy, and grad_norm with ood=full
    runtime.observe(
        predictor.name,
        [p["energy"] for p in predictions],
        {score: [p["ood"][score]["score"] for p in predictions] for score in returned},
        {score: [p["ood"][score]["flagged"] for p in predictions] for score in returned},
    )
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


@classify_router.post(
    "/models/{model}/ood",
    response_model=OODResponse,
    responses=INPUT_ERRORS,
    openapi_extra=IMAGE_BODY,
    summary="Every OOD score (higher = more likely out-of-distribution) and a combined verdict",
)
@lean(normalize=plain_bool)
async def ood(
    request: Request, predictor: PredictorDep, normalize: NormalizeQuery = True
) -> Response:
    runtime: Runtime = request.app.state.runtime
    x = await read_batch(request, input_spec(predictor, normalize), runtime.settings)
    (out, t1), (grad, t2) = await asyncio.gather(
        runtime.classify(predictor, x), runtime.grad(predictor, x)
    )
    results = predictor.ood_results(out, grad)
    returned = results[0].scores  # every score, and the combined verdict
    runtime.observe(
        predictor.name,
        [r.scores["energy"].score for r in results],
        {score: [r.scores[score].score for r in results] for score in returned},
        {
            **{score: [r.scores[score].flagged for r in results] for score in returned},
            COMBINED: [r.flagged for r in results],
        },
    )
    return json_response(
        OODResponse(
            model=predictor.name,
            version=predictor.version,
            calibrated=predictor.calibrated,
            results=results,
            timing=timing_of(t1, t2),
        )
    )
