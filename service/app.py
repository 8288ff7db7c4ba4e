"""The FastAPI application: `create_app(settings)`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.content_encoding import DecompressionMiddleware
from service.errors import install_error_handlers
from service.head import HeadMiddleware
from service.hot_path import HotPathMiddleware
from service.metrics import Metrics
from service.middleware import ConcurrencyLimitMiddleware, RequestContextMiddleware
from service.request_limits import BodyLimitMiddleware, HeaderLimitMiddleware
from service.routes import ROUTERS
from service.runtime import Runtime
from service.schemas import PredictJSON
from service.settings import Settings
from service.startup_errors import ExplainedStartupFailureMiddleware
from service.ui import install_ui
from service.v2 import serve_grpc, v2_router

__all__ = ["create_app"]

logger = logging.getLogger("service.app")

DESCRIPTION = """
Classify images with a Joint Energy-based Model (JEM): label, calibrated confidence
(softmax(logits / T)), energy E(x) = -logsumexp(logits) and out-of-distribution verdicts;
sample new images by SGLD on the model's energy.

Every OOD score points the same way: **higher = more likely out-of-distribution**.
Thresholds let 95% of a held-out in-distribution split pass; `percentile` says where a score
falls among those in-distribution inputs.

Errors always have the shape `{"error": {"code": "...", "message": "..."}}` (under `/v2`, the
Open Inference Protocol's own: `{"error": "..."}`).
"""


def create_app(settings: Settings | None = None, *, metrics: Metrics | None = None) -> FastAPI:
    settings = settings if settings is not None else Settings()
    runtime = Runtime(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.exit_on_load_error:
            # Before the server listens: a raise here is uvicorn's startup failure (exit 3).
            await asyncio.to_thread(runtime.check_models)
        runtime.start()
        try:
            async with serve_grpc(runtime):  # JEM_GRPC_PORT; stopped before the batchers drain
                yield
        finally:
            # uvicorn has already let in-flight requests finish (timeout_graceful_shutdown);
            # drain whatever is still queued, then release the threads.
            await runtime.close()
            logger.info("stopped")

    app = FastAPI(
        title="JEM service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from service.ui, with self-hosted assets
        redoc_url=None,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(v2_router)
    install_ui(app)

    def known_model(name: str) -> bool:
        return name in runtime.predictors

    app.add_middleware(HotPathMiddleware, known_model=known_model)  # innermost: the router's place
    app.add_middleware(HeadMiddleware)  # inside the others (see its docstring)
    # inside the body limit, which counts the compressed bytes; this one the decompressed
    app.add_middleware(DecompressionMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        timeout_s=settings.body_timeout_s,
    )
    app.add_middleware(HeaderLimitMiddleware, max_bytes=settings.max_header_bytes)
    app.add_middleware(
        ConcurrencyLimitMiddleware,
        limit=settings.limit_concurrency,
        retry_after_s=settings.retry_after_s,
        counter=runtime.in_flight,
    )
    app.add_middleware(
        RequestContextMiddleware,
        metrics=runtime.metrics,
        known_model=known_model,
        retry_after_s=settings.retry_after_s,
        routes=[route for router in (*ROUTERS, v2_router) for route in router.routes],
    )
    # outermost: the lifespan's messages pass every middleware above unchanged
    app.add_middleware(ExplainedStartupFailureMiddleware)

    # PredictJSON is parsed by hand (the route also takes multipart); list it for OpenAPI.
    original = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            schema = original()
            schema.setdefault("components", {}).setdefault("schemas", {})["PredictJSON"] = (
                PredictJSON.model_json_schema(ref_template="#/components/schemas/{model}")
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
