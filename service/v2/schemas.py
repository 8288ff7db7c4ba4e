"""The REST inference request (pydantic) and what the OpenAPI page says about /v2."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

__all__ = ["ERRORS", "INFER_BODY", "INFER_OK", "InferenceRequest", "RequestInput", "RequestOutput"]


class RequestInput(BaseModel):
    name: str = Field(description="'pixels' (FP32), 'pixels_uint8' (UINT8) or 'images' (BYTES).")
    shape: list[Annotated[int, Field(ge=0)]]
    datatype: str
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="binary_data_size: the tensor's bytes after the JSON."
    )
    data: Any = Field(
        default=None, description="Row-major values, flat or nested; BYTES images as base64."
    )


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="binary_data: true for binary tensor data; classification: k for the "
        "output's top k classes as BYTES 'value:index:label' (logits, probabilities).",
    )


class InferenceRequest(BaseModel):
    """The protocol's inference request; the body may be followed by binary tensor data."""

    id: str | None = None
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="binary_data_output: every output binary."
    )
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with its `#/$defs/...` references resolved in place (OpenAPI has no $defs)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    resolved: dict[str, Any] = walk(schema)
    return resolved


_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": what, "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
    for status, what in [
        (400, "Bad input (the message says what), or not ready for a readiness check."),
        (401, "No API key (when JEM_API_KEYS is set)."),
        (403, "Wrong API key."),
        (404, "Unknown model or version."),
        (413, "Body over JEM_MAX_BODY_BYTES."),
        (503, "Queue full or not ready (Retry-After)."),
        (504, "Request deadline exceeded."),
    ]
}
INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _inline(InferenceRequest.model_json_schema())},
            "application/octet-stream": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "Binary tensor data extension: Inference-Header-Content-"
                    "Length bytes of JSON (the request above), then the tensors' bytes.",
                }
            },
        },
    }
}
INFER_OK: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The outputs; binary ones after Inference-Header-Content-Length bytes.",
        "content": {
            "application/json": {},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
