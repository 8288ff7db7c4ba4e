# ruff: noqa: N818  (error names say what happened, as starlette's do; codes carry the kind)
"""Named domain errors and the one place that maps them (and every other failure) to HTTP.

Every error response has the shape `{"error": {"code": str, "message": str}}`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Scope

from model_store import StoreError

__all__ = [
    "AdminDisabled",
    "BodyTimeout",
    "BodyTooLarge",
    "CorruptImage",
    "DeadlineExceeded",
    "DeviceOutOfMemory",
    "GenerationBusy",
    "GenerationTimeout",
    "ImageTooLarge",
    "InvalidApiKey",
    "InvalidInput",
    "InvalidParameters",
    "MissingApiKey",
    "NotAnImage",
    "NotReady",
    "Overloaded",
    "ReloadRefused",
    "ServiceError",
    "TooManyImages",
    "UnknownModel",
    "UnsupportedImageFormat",
    "UnsupportedMediaType",
    "UnsupportedPixels",
    "error_body",
    "install_error_handlers",
    "is_v2",
    "status_for",
]

logger = logging.getLogger("service.errors")


class ServiceError(Exception):
    """Base of every error the service reports to clients; `code` is stable and documented."""

    code = "error"

    def __init__(self, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class InvalidInput(ServiceError):
    code = "invalid_input"


class NotAnImage(InvalidInput):
    code = "not_an_image"


class CorruptImage(InvalidInput):
    code = "corrupt_image"


class UnsupportedImageFormat(InvalidInput):
    code = "unsupported_image_format"


class UnsupportedPixels(InvalidInput):
    """A readable image whose pixel storage has no one right conversion (jem.imaging says why)."""

    code = "unsupported_pixels"


class UnsupportedMediaType(InvalidInput):
    code = "unsupported_media_type"


class ImageTooLarge(InvalidInput):
    code = "image_too_large"


class TooManyImages(InvalidInput):
    code = "too_many_images"


class BodyTooLarge(InvalidInput):
    code = "body_too_large"


class BodyTimeout(InvalidInput):
    code = "body_timeout"


class InvalidParameters(InvalidInput):
    code = "invalid_parameters"


class UnknownModel(ServiceError):
    code = "model_not_found"


class MissingApiKey(ServiceError):
    code = "missing_api_key"


class InvalidApiKey(ServiceError):
    code = "invalid_api_key"


class AdminDisabled(ServiceError):
    code = "admin_disabled"


class ReloadRefused(ServiceError):
    code = "reload_refused"


class Overloaded(ServiceError):
    code = "overloaded"


class NotReady(ServiceError):
    code = "not_ready"


class DeadlineExceeded(ServiceError):
    code = "deadline_exceeded"


class GenerationBusy(ServiceError):
    code = "generation_busy"


class GenerationTimeout(ServiceError):
    code = "generation_timeout"


class DeviceOutOfMemory(ServiceError):
    """The accelerator ran out of memory for one batch; the model itself keeps serving."""

    code = "device_out_of_memory"


# The one mapping from domain errors to HTTP statuses (most specific class first).
_STATUS: tuple[tuple[type[ServiceError], int], ...] = (
    (BodyTimeout, 408),
    (BodyTooLarge, 413),
    (ImageTooLarge, 413),
    (UnsupportedImageFormat, 415),
    (UnsupportedMediaType, 415),
    (InvalidInput, 422),
    (UnknownModel, 404),
    (MissingApiKey, 401),
    (InvalidApiKey, 403),
    (AdminDisabled, 403),
    (ReloadRefused, 409),
    (GenerationBusy, 429),
    (Overloaded, 503),
    (NotReady, 503),
    (DeviceOutOfMemory, 503),
    (DeadlineExceeded, 504),
    (GenerationTimeout, 504),
)

_HTTP_CODES: Mapping[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


def status_for(error: ServiceError) -> int:
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    return 500


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=dict(headers or {}))


def is_v2(scope: Scope) -> bool:
    """Whether the request is on the Open Inference Protocol's /v2 paths (/v2 itself too;
    after the root path, when the server was given one and the path still carries it)."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root + "/"):
        path = path[len(root) :]
    return path == "/v2" or path.startswith("/v2/")


def _error(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """`error_response`, or under /v2 the Open Inference Protocol's `{"error": "<message>"}`."""
    if is_v2(request.scope):
        return JSONResponse({"error": message}, status_code=status, headers=dict(headers or {}))
    return error_response(status, code, message, headers)


def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    headers: dict[str, str] = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, MissingApiKey):
        headers["WWW-Authenticate"] = "Bearer"
    return _error(request, status_for(exc), exc.code, exc.message, headers)


def _store_error(request: Request, exc: Exception) -> Response:
    # Store errors after startup only come from a broken store on disk: not the client's fault.
    logger.error("model store error: %s", exc)
    return _error(request, 500, "model_store_error", str(exc))


def _body_fields(request: Request) -> list[str]:
    """The fields of the route's JSON body model, for the message about an unknown one."""
    route = request.scope.get("route")
    field = getattr(route, "body_field", None)
    model = getattr(getattr(field, "field_info", None), "annotation", None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [info.alias or name for name, info in model.model_fields.items()]
    return []


def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors():
        loc = err.get("loc", ())
        where = ".".join(str(p) for p in loc)
        if err.get("type") == "json_invalid":  # loc: ("body", character offset)
            reason = (err.get("ctx") or {}).get("error", "")
            at = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
            parts.append(f"the body is not valid JSON{at}: {reason or 'JSON decode error'}")
        elif err.get("type") == "extra_forbidden" and (fields := _body_fields(request)):
            parts.append(f"{where}: not a field of this request; fields: {', '.join(fields)}")
        else:
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return _error(request, 422, "validation_error", "; ".join(parts) or "invalid request")


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found" and is_v2(request.scope):
        message = (
            f"no route {request.method} {request.url.path}: of the Open Inference Protocol this "
            "service has the health, server and model metadata, model ready, model "
            "configuration and infer endpoints (no model repository or statistics, no shared "
            "memory: tensors travel in the request, no trace or log settings); see /docs"
        )
    elif exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}; see /docs for the API"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    return _error(request, exc.status_code, code, message, exc.headers)


def _unhandled(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error", exc_info=exc)
    return _error(request, 500, "internal_error", "internal error; the request id is in the logs")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(StoreError, _store_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
