"""The gRPC messages of the Open Inference Protocol in and out of this service's types:
typed tensor contents, request parameters, and a peek at an oversized message's model name."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service.errors import InvalidInput
from service.v2.proto import grpc_predict_v2_pb2 as pb
from service.v2.tensors import DTYPES, InferTensor, from_raw

__all__ = ["Oversized", "input_tensor", "leading_name", "parameter_value"]

# InferTensorContents field per datatype (the typed alternative to raw_input_contents)
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


class Oversized:
    """What the deserializer hands the servicer for a message over JEM_MAX_BODY_BYTES: its size
    and the model it names (for the metrics' label), the rest left unparsed."""

    def __init__(self, size: int, model: str) -> None:
        self.size = size
        self.model = model


def leading_name(data: bytes) -> str:
    """Field 1 (`name` / `model_name`, a string) when the message starts with it, as protobuf
    writes fields in number order; "" otherwise. Reads a few bytes, parses nothing else."""
    if not data or data[0] != 0x0A:  # field 1, length-delimited
        return ""
    length, shift, i = 0, 0, 1
    while i < min(len(data), 6):
        byte = data[i]
        length |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            return data[i : i + length].decode("utf-8", "replace") if length <= 1024 else ""
        shift += 7
    return ""


def input_tensor(t: Any, raw: bytes | None) -> InferTensor:
    shape = list(t.shape)
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input {t.name!r}: shape {shape} has a negative dimension")
    if raw is not None:
        return from_raw(t.name, t.datatype, shape, raw)
    field = _CONTENTS.get(t.datatype)
    if field is None:
        raise InvalidInput(f"input {t.name!r}: datatype {t.datatype!r} cannot travel in contents")
    values = list(getattr(t.contents, field))
    count = math.prod(shape)
    if len(values) != count:
        raise InvalidInput(
            f"input {t.name!r}: {len(values)} elements in contents, shape {shape} needs {count}"
        )
    if t.datatype == "BYTES":
        data = np.empty(count, dtype=object)
        data[:] = values
    else:
        try:
            data = np.asarray(values, dtype=DTYPES[t.datatype])
        except OverflowError as exc:
            raise InvalidInput(f"input {t.name!r}: {exc}") from None
    return InferTensor(t.name, t.datatype, tuple(shape), data.reshape(shape))


def parameter_value(value: pb.InferParameter) -> Any:
    """An InferParameter's value, whichever of its types was set (None: none was)."""
    choice = value.WhichOneof("parameter_choice")
    return getattr(value, choice) if choice else None
