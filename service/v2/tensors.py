"""Tensors of the Open Inference Protocol: datatypes, and the two ways their data travels.

JSON carries `data` as a (flat or nested) list in row-major order. The binary tensor data
extension, which `tritonclient` uses by default, and gRPC's `raw_input_contents` /
`raw_output_contents` carry the flattened elements as little-endian bytes; a BYTES element is
a 4-byte little-endian length followed by that many bytes.
Spec: https://github.com/kserve/open-inference-protocol (required_api.md, binary extension).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.errors import InvalidInput

__all__ = [
    "DTYPES",
    "InferTensor",
    "bytes_elements",
    "from_json",
    "from_raw",
    "to_json_data",
    "to_raw",
]

# Protocol datatype -> numpy dtype (little-endian). BYTES elements are Python `bytes`.
DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class InferTensor:
    """One named tensor: `data` has `shape`; BYTES data is an object array of `bytes`."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray


def _check_header(name: str, datatype: str, shape: Sequence[int]) -> int:
    """The element count `shape` implies; raises InvalidInput for unknown types or bad shapes."""
    if datatype != "BYTES" and datatype not in DTYPES:
        known = ", ".join([*DTYPES, "BYTES"])
        raise InvalidInput(f"input {name!r}: unknown datatype {datatype!r}; one of {known}")
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input {name!r}: shape {list(shape)} has a negative dimension")
    return math.prod(shape)


def bytes_elements(name: str, raw: bytes | memoryview, count: int) -> list[bytes]:
    """Split length-prefixed BYTES elements; exactly `count` of them must fill `raw`."""
    view = memoryview(raw)
    items: list[bytes] = []
    pos = 0
    while pos < len(view):
        if pos + 4 > len(view) or len(items) == count:
            break
        (length,) = _LENGTH.unpack_from(view, pos)
        end = pos + 4 + length
        if end > len(view):
            break
        items.append(bytes(view[pos + 4 : end]))
        pos = end
    if len(items) != count or pos != len(view):
        raise InvalidInput(
            f"input {name!r}: BYTES data does not hold {count} length-prefixed "
            f"element{'' if count == 1 else 's'} (each a 4-byte little-endian length, then "
            "its bytes) and nothing else"
        )
    return items


def _object_array(items: Sequence[bytes], shape: Sequence[int]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = list(items)
    return array.reshape(tuple(shape))


def from_raw(
    name: str, datatype: str, shape: Sequence[int], raw: bytes | memoryview
) -> InferTensor:
    """A tensor from binary data (the binary extension's body part, or gRPC raw contents)."""
    count = _check_header(name, datatype, shape)
    if datatype == "BYTES":
        data = _object_array(bytes_elements(name, raw, count), shape)
    else:
        dtype = DTYPES[datatype]
        if len(raw) != count * dtype.itemsize:
            raise InvalidInput(
                f"input {name!r}: {len(raw)} bytes of {datatype} data, but shape {list(shape)} "
                f"needs {count * dtype.itemsize}"
            )
        data = np.frombuffer(raw, dtype=dtype).reshape(tuple(shape))
    return InferTensor(name, datatype, tuple(shape), data)


def from_json(
    name: str, datatype: str, shape: Sequence[int], data: Any, *, bytes_of: Any = None
) -> InferTensor:
    """A tensor from JSON `data` (flat or nested, row-major). BYTES elements are strings,
    turned into bytes by `bytes_of(str, index)` (default: their UTF-8 encoding)."""
    count = _check_header(name, datatype, shape)
    flat = _flatten(name, data)
    if len(flat) != count:
        raise InvalidInput(
            f"input {name!r}: {len(flat)} data elements, but shape {list(shape)} needs {count}"
        )
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise InvalidInput(f"input {name!r}: BYTES data must be a list of strings")
        convert = bytes_of if bytes_of is not None else (lambda s, _i: s.encode())
        items = [convert(v, i) for i, v in enumerate(flat)]
        return InferTensor(name, datatype, tuple(shape), _object_array(items, shape))
    dtype = DTYPES[datatype]
    if datatype == "BOOL":
        ok = all(isinstance(v, bool) for v in flat)
    elif dtype.kind in "iu":
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in flat)
    else:
        ok = all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat)
    if not ok:
        raise InvalidInput(f"input {name!r}: data elements must all be {datatype} values")
    try:
        array = np.asarray(flat, dtype=dtype) if flat else np.zeros(0, dtype=dtype)
    except (OverflowError, ValueError) as exc:
        raise InvalidInput(f"input {name!r}: values out of range for {datatype} ({exc})") from None
    if dtype.kind in "iu" and flat and not np.array_equal(array, np.asarray(flat, dtype=object)):
        raise InvalidInput(f"input {name!r}: values out of range for {datatype}")
    return InferTensor(name, datatype, tuple(shape), array.reshape(tuple(shape)))


def _flatten(name: str, data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise InvalidInput(f"input {name!r}: 'data' must be a list")
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:  # iterative: a hostile, deeply nested list cannot exhaust the recursion limit
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def to_raw(tensor: InferTensor) -> bytes:
    """The tensor's elements as binary data (row-major, little-endian; BYTES length-prefixed)."""
    if tensor.datatype == "BYTES":
        return b"".join(_LENGTH.pack(len(b)) + b for b in tensor.data.reshape(-1))
    return np.ascontiguousarray(tensor.data, dtype=DTYPES[tensor.datatype]).tobytes()


def to_json_data(tensor: InferTensor) -> list[Any]:
    """The tensor's elements as a flat JSON list (BYTES as UTF-8 strings)."""
    flat = tensor.data.reshape(-1)
    if tensor.datatype == "BYTES":
        return [b.decode("utf-8", errors="replace") for b in flat]
    values: list[Any] = flat.tolist()
    return values
