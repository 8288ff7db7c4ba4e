"""HTTP routes: thin; the work happens in Runtime, Predictor and the batchers.

One module a theme: classify.py (predict, ood), models.py (listing, one model, generate),
operations.py (admin reload, healthz, readyz, metrics). What they share (dependencies,
documented errors and bodies, JSON responses) is in service/route_common.py. `ROUTERS` is
the order the app includes them in, which is the order of the OpenAPI document's paths.
"""

from __future__ import annotations

from fastapi import APIRouter

from service.routes.classify import classify_router
from service.routes.models import models_router
from service.routes.operations import admin_router, ops_router

__all__ = ["ROUTERS", "admin_router", "classify_router", "models_router", "ops_router"]

ROUTERS: tuple[APIRouter, ...] = (classify_router, models_router, admin_router, ops_router)
