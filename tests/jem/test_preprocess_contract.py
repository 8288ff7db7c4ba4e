"""The uint8 <-> [-1, 1] contract and the input spec's JSON form."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from jem import InputSpec, tensor_to_uint8, uint8_to_tensor

GRAY = InputSpec(channels=1, height=8, width=8, color_mode="L", invert=True)
RGB = InputSpec(channels=3, height=4, width=5, color_mode="RGB")


def test_every_uint8_value_round_trips_exactly() -> None:
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    spec = InputSpec(channels=1, height=16, width=16, color_mode="L")
    x = uint8_to_tensor(values, spec)
    assert x.dtype == torch.float32
    assert x.shape == (1, 1, 16, 16)
    assert x.min() == -1.0
    assert x.max() == 1.0
    torch.testing.assert_close(x.flatten(), torch.arange(256.0) / 127.5 - 1)
    assert np.array_equal(tensor_to_uint8(x).numpy()[0, :, :, 0], values)


def test_shapes_and_channel_order() -> None:
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)
    x = uint8_to_tensor(batch, RGB)
    assert x.shape == (3, 3, 4, 5)
    assert float(x[1, 2, 3, 4]) == pytest.approx(batch[1, 3, 4, 2] / 127.5 - 1)  # NHWC -> NCHW
    assert uint8_to_tensor(batch[0], RGB).shape == (1, 3, 4, 5)
    assert uint8_to_tensor(torch.from_numpy(batch), RGB).shape == (3, 3, 4, 5)
    assert torch.equal(tensor_to_uint8(x), torch.from_numpy(batch))
    gray = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    assert uint8_to_tensor(gray, GRAY).shape == (1, 1, 8, 8)


@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 1.0), (-0.5, 2.0)])
def test_arrays_and_tensors_give_bit_identical_values(value_range: tuple[float, float]) -> None:
    """NumPy input goes through a look-up table, tensor input through torch ops: the same."""
    spec = InputSpec(channels=3, height=16, width=16, color_mode="RGB", value_range=value_range)
    rng = np.random.default_rng(0)
    batch = np.stack([np.arange(256, dtype=np.uint8).reshape(16, 16)] * 3, axis=-1)[None]
    batch = np.concatenate([batch, rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)])
    from_array = uint8_to_tensor(batch, spec)
    from_tensor = uint8_to_tensor(torch.from_numpy(batch), spec)
    assert from_array.dtype == from_tensor.dtype == torch.float32
    assert from_array.is_contiguous()
    assert torch.equal(from_array, from_tensor)
    flipped = np.asfortranarray(batch)[:, ::-1]  # neither C- nor F-contiguous
    expected = uint8_to_tensor(torch.from_numpy(np.ascontiguousarray(flipped)), spec)
    assert torch.equal(uint8_to_tensor(flipped, spec), expected)


@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 1.0)])
def test_one_channel_arrays_give_the_tensor_path_values(value_range: tuple[float, float]) -> None:
    """One channel is looked up without a transpose (NHWC and NCHW orders agree): the same
    values and a contiguous NCHW result, for contiguous and strided input."""
    spec = InputSpec(channels=1, height=16, width=16, color_mode="L", value_range=value_range)
    rng = np.random.default_rng(0)
    batch = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    batch = np.concatenate([batch, rng.integers(0, 256, (4, 16, 16, 1), dtype=np.uint8)])
    for arr in (batch, np.asfortranarray(batch)[:, ::-1], batch[0, :, :, 0]):
        from_array = uint8_to_tensor(arr, spec)
        expected = uint8_to_tensor(torch.from_numpy(np.ascontiguousarray(arr)), spec)
        assert from_array.is_contiguous()
        assert from_array.dtype == torch.float32
        assert torch.equal(from_array, expected)


def test_tensor_to_uint8_rounds_and_clamps() -> None:
    x = torch.tensor([-3.0, -1.0, 0.0, 0.999, 1.0, 2.0]).view(1, 1, 1, 6)
    assert tensor_to_uint8(x).flatten().tolist() == [0, 0, 128, 255, 255, 255]


def test_wrong_inputs_say_what_is_wrong() -> None:
    with pytest.raises(TypeError, match="uint8"):
        uint8_to_tensor(np.zeros((8, 8), dtype=np.float32), GRAY)
    with pytest.raises(ValueError, match="resize/convert"):
        uint8_to_tensor(np.zeros((8, 8, 3), dtype=np.uint8), GRAY)
    with pytest.raises(ValueError, match="B,C,H,W"):
        tensor_to_uint8(torch.zeros(8, 8))


def test_other_value_range() -> None:
    spec = InputSpec(channels=1, height=1, width=2, color_mode="L", value_range=(0.0, 1.0))
    x = uint8_to_tensor(np.array([[0, 255]], dtype=np.uint8), spec)
    assert x.flatten().tolist() == [0.0, 1.0]
    assert tensor_to_uint8(x, (0.0, 1.0)).flatten().tolist() == [0, 255]


def test_input_spec_json_round_trip() -> None:
    d = GRAY.to_dict()
    assert d["value_range"] == [-1.0, 1.0]
    back = InputSpec.from_dict(json.loads(json.dumps(d)))
    assert back == GRAY
    assert back.shape == (1, 8, 8)
    assert isinstance(back.value_range, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.channels = 3  # type: ignore[misc]


def test_input_spec_validation() -> None:
    with pytest.raises(ValueError, match="color_mode"):
        InputSpec(channels=3, height=8, width=8, color_mode="L")
    with pytest.raises(ValueError, match="resample"):
        InputSpec(1, 8, 8, "L", resample="cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown InputSpec fields"):
        InputSpec.from_dict({**GRAY.to_dict(), "dpi": 72})
