"""The admin and operations routes: a model's reload (behind the API keys), liveness,
readiness and Prometheus metrics.
"""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from service.errors import AdminDisabled, error_body
from service.metrics import CONTENT_TYPE_LATEST
from service.route_common import ERROR_CONTENT, V1_OPTIONS, RuntimeDep
from service.schemas import ReloadRequest, ReloadResponse

__all__ = ["admin_router", "ops_router"]

# One tag a router: FastAPI adds a route's tags to its router's, and Swagger UI lists an
# operation once under every tag it has.
admin_router = APIRouter(**V1_OPTIONS, tags=["admin"])
ops_router = APIRouter(tags=["operations"])


@admin_router.post(
    "/admin/models/{model}/reload",
    response_model=ReloadResponse,
    responses={
        403: {"description": "Wrong API key, or no JEM_API_KEYS configured.", **ERROR_CONTENT},
        404: {"description": "Unknown model or version.", **ERROR_CONTENT},
        409: {
            "description": "The new version failed verification; the old one serves on.",
            **ERROR_CONTENT,
        },
        422: {"description": "A ref of another model, or not a valid reference.", **ERROR_CONTENT},
        503: {"description": "Not ready yet.", **ERROR_CONTENT},
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
    responses={503: {"description": "Not ready, with the reason.", **ERROR_CONTENT}},
)
async def readyz(runtime: RuntimeDep) -> Response:
    if not runtime.ready:
        return JSONResponse(error_body("not_ready", runtime.reason), status_code=503)
    return JSONResponse({"status": "ready", "models": sorted(runtime.predictors)})


@ops_router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(runtime: RuntimeDep) -> Response:
    runtime.observe_device_memory()
    return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
