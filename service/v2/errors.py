"""How the service's errors read in the Open Inference Protocol: `{"error": "<message>"}` with
an HTTP status on REST, a status code with the message on gRPC. Bad input is 400 /
INVALID_ARGUMENT, never a 5xx."""

from __future__ import annotations

from service.errors import (
    BodyTooLarge,
    DeadlineExceeded,
    InvalidApiKey,
    InvalidInput,
    MissingApiKey,
    NotReady,
    Overloaded,
    ServiceError,
    UnknownModel,
)

__all__ = ["NotProvided", "grpc_code_name", "http_status"]


class NotProvided(ServiceError):  # noqa: N818  (as service.errors names them)
    """A Triton RPC this service does not have: UNIMPLEMENTED over gRPC, counted as the 404
    the same call gets over REST."""

    code = "not_provided"


# (error class, HTTP status, grpc.StatusCode name); the most specific class first.
_MAPPING: tuple[tuple[type[ServiceError], int, str], ...] = (
    (NotProvided, 404, "UNIMPLEMENTED"),
    (BodyTooLarge, 413, "RESOURCE_EXHAUSTED"),
    (InvalidInput, 400, "INVALID_ARGUMENT"),
    (UnknownModel, 404, "NOT_FOUND"),
    (MissingApiKey, 401, "UNAUTHENTICATED"),
    (InvalidApiKey, 403, "PERMISSION_DENIED"),
    (Overloaded, 503, "UNAVAILABLE"),
    (NotReady, 503, "UNAVAILABLE"),
    (DeadlineExceeded, 504, "DEADLINE_EXCEEDED"),
)


def http_status(error: ServiceError) -> int:
    return next((status for cls, status, _ in _MAPPING if isinstance(error, cls)), 500)


def grpc_code_name(error: ServiceError) -> str:
    return next((code for cls, _, code in _MAPPING if isinstance(error, cls)), "INTERNAL")
