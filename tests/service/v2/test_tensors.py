"""The protocol's tensor encodings: JSON (flat or nested) and binary, both ways."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from service.errors import InvalidInput
from service.v2.tensors import bytes_elements, from_json, from_raw, to_json_data, to_raw


@pytest.mark.parametrize(
    ("datatype", "array"),
    [
        ("FP32", np.arange(6, dtype=np.float32).reshape(2, 3) / 7),
        ("UINT8", np.arange(6, dtype=np.uint8).reshape(2, 3)),
        ("INT64", np.array([[-(2**40), 1, 2], [3, 4, 5]], dtype=np.int64)),
        ("BOOL", np.array([[True, False, True], [False, False, True]])),
    ],
)
def test_binary_and_json_round_trips(datatype: str, array: np.ndarray) -> None:
    shape = list(array.shape)
    raw = from_raw("t", datatype, shape, to_raw(from_json("t", datatype, shape, array.tolist())))
    np.testing.assert_array_equal(raw.data, array)
    flat = from_json("t", datatype, shape, array.reshape(-1).tolist())  # flat data is allowed
    assert to_json_data(flat) == array.reshape(-1).tolist()


def test_bytes_are_length_prefixed_little_endian() -> None:
    items = [b"", b"\x89PNG", b"x" * 300]
    raw = b"".join(struct.pack("<I", len(b)) + b for b in items)
    tensor = from_raw("images", "BYTES", [3], raw)
    assert list(tensor.data) == items
    assert to_raw(tensor) == raw
    for broken in (raw[:-1], raw + b"\x00", raw[:2]):
        with pytest.raises(InvalidInput, match="length-prefixed"):
            bytes_elements("images", broken, 3)
    assert bytes_elements("images", raw, 3) == items


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "message"),
    [
        ("FP32", [2], [1.0], "needs 2"),
        ("FP32", [1], ["1"], "FP32 values"),
        ("FP32", [1], [True], "FP32 values"),
        ("UINT8", [1], [1.5], "UINT8 values"),
        ("UINT8", [1], [256], "out of range"),
        ("INT8", [1], [-129], "out of range"),
        ("BOOL", [1], [1], "BOOL values"),
        ("BYTES", [1], [1], "list of strings"),
        ("FP128", [1], [1.0], "unknown datatype"),
        ("FP32", [1], 1.0, "must be a list"),
    ],
)
def test_json_data_is_checked(datatype: str, shape: list[int], data: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        from_json("t", datatype, shape, data)


def test_binary_size_must_match_the_shape() -> None:
    with pytest.raises(InvalidInput, match="needs 24"):
        from_raw("t", "FP32", [2, 3], b"\x00" * 20)
    with pytest.raises(InvalidInput, match="negative"):
        from_raw("t", "FP32", [-1, 3], b"")


def test_deeply_nested_json_data_does_not_recurse() -> None:
    data: list[object] = [1.0]
    for _ in range(100_000):
        data = [data]
    tensor = from_json("t", "FP32", [1], data)
    assert tensor.data.tolist() == [1.0]
