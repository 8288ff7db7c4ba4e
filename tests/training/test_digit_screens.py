"""tests/digit_screens.py's ensemble screen: pair means and the errors every model shares."""

from __future__ import annotations

import pytest
import torch

from tests.digit_screens import _screen_ensembles


def _logits(predicted: list[int], confidence: float) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(predicted), 3).float() * confidence


def test_pairs_and_shared_errors(capsys: pytest.CaptureFixture[str]) -> None:
    labels = torch.tensor([0, 1, 2, 0])
    # a misses digit 3 only; b misses digits 1 and 3; c misses digit 3 and digit 2
    logits = {
        "a": _logits([0, 1, 2, 1], 4.0),
        "b": _logits([0, 2, 2, 1], 2.0),
        "c": _logits([0, 1, 0, 2], 1.0),
    }
    _screen_ensembles(logits, labels)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "  a + b: softmax mean 0.7500 (0.7500)"  # digit 1: the surer a wins
    assert out[-1] == (
        "errors per model [1, 2, 2]: wrong in every model 1, in at least half 1, in at least one 3"
    )
