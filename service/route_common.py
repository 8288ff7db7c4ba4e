"""What the /v1 routes share: the dependencies that hand them the runtime and the predictor, the
OpenAPI documentation of their errors and image bodies, the API-key router options, and the
helpers that shape a response (a pydantic model serialised once, the timing block, the input spec
with or without the model's normalisation).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from jem import InputSpec
from service.auth import require_api_key
from service.errors import error_body
from service.inputs import NPY_CONTENT_TYPE
from service.predictor import Predictor
from service.runtime import Runtime
from service.schemas import Timing

__all__ = [
    "ERROR_CONTENT",
    "IMAGE_BODY",
    "INPUT_ERRORS",
    "V1_OPTIONS",
    "NormalizeQuery",
    "PredictorDep",
    "RuntimeDep",
    "get_predictor",
    "get_runtime",
    "input_spec",
    "json_response",
    "timing_of",
]


# Dependencies are `async def` although they never await: FastAPI runs a plain `def` dependency
# in its thread pool, and those hand-offs cost ~20% of a small request's CPU (bench/, py-spy).
async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_predictor(model: str, request: Request) -> Predictor:
    # not through RuntimeDep: each dependency costs FastAPI's solver a few % of a small request
    runtime: Runtime = request.app.state.runtime
    return runtime.predictor(model)


PredictorDep = Annotated[Predictor, Depends(get_predictor)]

# An error response's OpenAPI content (the `{"error": {"code", "message"}}` shape): spread it
# into a `responses` entry beside its description.
ERROR_CONTENT = {"content": {"application/json": {"example": error_body("code", "what to do")}}}
# The OpenAPI request body of the image routes (`openapi_extra=`): they read the body
# themselves (service.inputs.read_batch), so FastAPI cannot derive it.
IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                    "required": ["files"],
                }
            },
            "application/json": {"schema": {"$ref": "#/components/schemas/PredictJSON"}},
            NPY_CONTENT_TYPE: {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "numpy.save of a uint8 (0..255) or float (value range) "
                    "array of shape [N, C, H, W], or [N, H, W] for one channel.",
                }
            },
        },
    }
}
# The documented errors of a route that reads images (`responses=`).
INPUT_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"description": d, **ERROR_CONTENT}
    for s, d in [
        (404, "Unknown model (the message lists the served ones)."),
        (413, "Body or image too large."),
        (415, "Unsupported content type or image format."),
        (422, "Not an image, corrupt image, wrong shape, NaN or out-of-range values, ..."),
        (503, "Queue full (Retry-After) or not ready."),
        (504, "Request deadline exceeded."),
    ]
}

# The options of a /v1 router (`APIRouter(**V1_OPTIONS, ...)`): its prefix, the API-key check on
# every route, and that check's documented errors.
V1_OPTIONS: dict[str, Any] = {
    "prefix": "/v1",
    "dependencies": [Depends(require_api_key)],
    "responses": {
        401: {"description": "No API key (when JEM_API_KEYS is set).", **ERROR_CONTENT},
        403: {"description": "Wrong API key.", **ERROR_CONTENT},
    },
}


def json_response(body: BaseModel) -> Response:
    """A response model serialised once, by pydantic's Rust core.

    Returning the model itself would make FastAPI dump it to a dict, validate that dict against
    `response_model` again and dump the result; with the per-image objects that was about a
    fifth of a 64-image predict's py-spy samples (docs/benchmarks.md). The routes keep
    `response_model=` for the OpenAPI schema.
    """
    return Response(body.model_dump_json(), media_type="application/json")


NormalizeQuery = Annotated[
    bool,
    Query(
        description="Apply the model's input normalisation (its input_spec.normalization) to "
        "uploaded images; false for images already in the model's form (e.g. pre-normalised "
        "digits at any size). Pixel arrays are never normalised."
    ),
]


def input_spec(predictor: Predictor, normalize: bool) -> InputSpec:
    """The model's input spec, without its normalisation when `normalize` is false."""
    spec = predictor.spec
    return spec if normalize or spec.normalization is None else replace(spec, normalization=None)


def timing_of(*timings: Any) -> Timing:
    """One response's timing block from its batcher timings (anything with `queue_s`,
    `compute_s` in seconds and `batch_size`): the longest queue wait, the summed compute in ms,
    the largest batch."""
    return Timing(
        queue_ms=round(max(t.queue_s for t in timings) * 1000, 3),
        compute_ms=round(sum(t.compute_s for t in timings) * 1000, 3),
        batch_size=max(t.batch_size for t in timings),
    )
