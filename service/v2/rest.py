"""The Open Inference Protocol's REST API under /v2, with the binary tensor data extension.

`tritonclient.http` sends no Content-Type (the aio client: application/octet-stream), so the
body is read as the protocol says: JSON, or, with an `Inference-Header-Content-Length` header,
that many bytes of JSON followed by the binary tensor data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from service.auth import require_api_key
from service.errors import InvalidInput, ServiceError
from service.predictor import Predictor
from service.runtime import Runtime
from service.v2.classification import PARAMETER
from service.v2.config import model_config
from service.v2.errors import http_status
from service.v2.model import base64_element, infer, model_metadata, resolve
from service.v2.schemas import ERRORS, INFER_BODY, INFER_OK, InferenceRequest
from service.v2.tensors import InferTensor, from_json, from_raw, to_json_data, to_raw

__all__ = ["SERVER_METADATA", "v2_router"]

SERVER_METADATA = {
    "name": "jem-serve",
    "version": "0.1.0",
    "extensions": ["binary_tensor_data", "classification", "model_configuration"],
}
HEADER_LENGTH = "inference-header-content-length"


def protocol_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class ProtocolRoute(APIRoute):
    """A route whose errors, its dependencies' included, have the protocol's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ServiceError as exc:
                headers = {}
                if exc.retry_after_s is not None:
                    headers["Retry-After"] = str(exc.retry_after_s)
                return protocol_error(http_status(exc), exc.message, headers)
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
                    for e in exc.errors()
                )
                return protocol_error(400, problems or "invalid request")
            except HTTPException as exc:
                return protocol_error(exc.status_code, str(exc.detail), dict(exc.headers or {}))

        return route


v2_router = APIRouter(
    prefix="/v2",
    route_class=ProtocolRoute,
    tags=["v2 (Open Inference Protocol)"],
    responses=ERRORS,
)
_auth = [Depends(require_api_key)]


async def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


async def _predictor(model: str, runtime: RuntimeDep, version: str | None = None) -> Predictor:
    return resolve(runtime, model, version)


PredictorDep = Annotated[Predictor, Depends(_predictor)]


def _split_body(request: Request, body: bytes) -> tuple[bytes, memoryview]:
    """(JSON header, binary tensor data) per the binary extension's header."""
    length = request.headers.get(HEADER_LENGTH)
    if length is None:
        return body, memoryview(b"")
    if not length.isdigit() or int(length) > len(body):
        raise InvalidInput(
            f"Inference-Header-Content-Length {length!r}: not a byte count within the "
            f"{len(body)}-byte body"
        )
    n = int(length)
    return body[:n], memoryview(body)[n:]


def _tensors(req: InferenceRequest, binary: memoryview) -> list[InferTensor]:
    tensors, offset = [], 0
    for item in req.inputs:
        size = item.parameters.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InvalidInput(
                    f"input {item.name!r}: binary_data_size {size!r} is beyond the "
                    f"{len(binary) - offset} bytes of binary data left in the body"
                )
            raw = binary[offset : offset + size]
            offset += size
            tensors.append(from_raw(item.name, item.datatype, item.shape, raw))
        elif item.data is None:
            raise InvalidInput(f"input {item.name!r} has neither 'data' nor binary_data_size")
        else:
            # JSON cannot carry image files as text: BYTES images come base64-encoded
            convert = base64_element if item.name == "images" else None
            tensors.append(
                from_json(item.name, item.datatype, item.shape, item.data, bytes_of=convert)
            )
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data belong to no input")
    return tensors


def _encode(body: dict[str, Any], outputs: list[InferTensor], binary: set[str]) -> Response:
    entries, chunks = [], []
    for t in outputs:
        entry: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
        if t.name in binary:
            raw = to_raw(t)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = to_json_data(t)
        entries.append(entry)
    header = json.dumps({**body, "outputs": entries}, separators=(",", ":")).encode()
    if not chunks:
        return Response(header, media_type="application/json")
    return Response(
        header + b"".join(chunks),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )


@v2_router.get("", name="v2_server_metadata", dependencies=_auth, summary="Server metadata")
async def server_metadata() -> dict[str, Any]:
    return SERVER_METADATA


@v2_router.get("/health/live", name="v2_health_live", summary="Liveness: the process answers")
async def health_live() -> dict[str, bool]:
    return {"live": True}


@v2_router.get(
    "/health/ready", name="v2_health_ready", summary="Readiness: 200 once every model is warm"
)
async def health_ready(runtime: RuntimeDep) -> Response:
    if not runtime.ready:
        return protocol_error(400, f"not ready: {runtime.reason}")
    return JSONResponse({"ready": True})


def _model_paths(suffix: str) -> list[str]:
    return [f"/models/{{model}}{suffix}", f"/models/{{model}}/versions/{{version}}{suffix}"]


async def model_ready(predictor: PredictorDep) -> dict[str, Any]:
    return {"name": predictor.name, "ready": True}


async def model_info(predictor: PredictorDep) -> dict[str, Any]:
    return model_metadata(predictor)


async def model_config_route(predictor: PredictorDep, runtime: RuntimeDep) -> dict[str, Any]:
    return model_config(predictor, runtime.settings)


async def model_infer(request: Request, predictor: PredictorDep, runtime: RuntimeDep) -> Response:
    header, binary = _split_body(request, await request.body())
    try:
        req = InferenceRequest.model_validate_json(header)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInput(f"invalid inference request: {problems}") from None
    tensors = _tensors(req, binary)
    everything_binary = bool(req.parameters.get("binary_data_output", False))
    names = [o.name for o in req.outputs] if req.outputs else None
    class_counts = {
        o.name: o.parameters[PARAMETER] for o in req.outputs or () if PARAMETER in o.parameters
    }
    result = await infer(runtime, predictor, tensors, names, class_counts)
    if req.outputs:
        binary_names = {
            o.name for o in req.outputs if o.parameters.get("binary_data", everything_binary)
        }
    else:
        binary_names = {t.name for t in result.outputs} if everything_binary else set()
    body: dict[str, Any] = {"model_name": result.model_name, "model_version": result.model_version}
    if req.id is not None:
        body["id"] = req.id
    return _encode(body, result.outputs, binary_names)


for path in _model_paths(""):
    v2_router.add_api_route(
        path, model_info, name="v2_model_metadata", dependencies=_auth, summary="Model metadata"
    )
for path in _model_paths("/ready"):
    v2_router.add_api_route(
        path, model_ready, name="v2_model_ready", dependencies=_auth, summary="Model readiness"
    )
for path in _model_paths("/config"):
    v2_router.add_api_route(
        path,
        model_config_route,
        name="v2_model_config",
        dependencies=_auth,
        summary="Model configuration (Triton's model configuration extension)",
    )
for path in _model_paths("/infer"):
    v2_router.add_api_route(
        path,
        model_infer,
        methods=["POST"],
        name="v2_infer",
        dependencies=_auth,
        responses=INFER_OK,
        openapi_extra=INFER_BODY,
        summary="Inference: JSON or binary tensor data in, the requested outputs out",
    )
