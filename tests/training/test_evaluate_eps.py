"""`evaluate --linf-eps/--l2-eps`: the PGD radii, parsed and checked before any work."""

from __future__ import annotations

import argparse

import pytest

from training.eval_cli import _eps_list, _linf_eps_list
from training.evaluate import LINF_EPS


def test_radii_parse_as_comma_separated_numbers() -> None:
    assert _linf_eps_list("0,0.03,0.1") == (0.0, 0.03, 0.1)
    assert _eps_list("0, 0.5") == (0.0, 0.5)
    assert 0.03 in LINF_EPS  # issue 15's robustness target is at L-inf 0.03


@pytest.mark.parametrize(
    ("text", "message"),
    [("0,abc", "comma-separated"), ("-0.1", ">= 0"), ("", ">= 0"), ("0,0.03", "include 0.1")],
)
def test_bad_radii_are_argument_errors(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        _linf_eps_list(text)
