"""Triton's classification extension: an output's top classes as `"<value>:<index>:<label>"`.

A requested output with the parameter `classification: k` (REST: a JSON number; gRPC:
`int64_param`; tritonclient: `InferRequestedOutput(name, class_count=k)`) is answered as a
BYTES tensor of shape [N, k] instead of its values: per image, the k highest-valued classes of
that output, highest first, each as `value:index:label` (the label is the model's class name).
Only the per-class outputs (`logits`, `probabilities`) can be classified; a k above the number
of classes K gives all K. Values print as the shortest text that reads back as the same FP32.
Spec: triton-inference-server/server docs/protocol/extension_classification.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from service.errors import InvalidInput
from service.v2.tensors import InferTensor

__all__ = ["PARAMETER", "class_count", "classify"]

PARAMETER = "classification"


def class_count(output: str, value: Any, per_class: Mapping[str, bool]) -> int:
    """The `classification` parameter of the requested `output`, checked.

    `per_class`: each output this model has -> whether it holds one value per class. Raises
    InvalidInput (400) for a value that is not a positive integer and for an output that has no
    classes to rank (an unknown output is left to the caller's own check).
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(
            f"output {output!r}: parameter 'classification' must be a positive integer "
            f"(how many top classes to return), got {value!r}"
        )
    if output in per_class and not per_class[output]:
        ranked = ", ".join(name for name, flag in per_class.items() if flag)
        raise InvalidInput(
            f"output {output!r} holds one value per image, not per class: "
            f"'classification' applies to {ranked}"
        )
    return value


def classify(tensor: InferTensor, k: int, class_names: Sequence[str]) -> InferTensor:
    """`tensor` ([N, K] values) as its top-`k` classes: BYTES [N, min(k, K)]."""
    values = np.asarray(tensor.data, dtype=np.float32)
    k = min(k, values.shape[1])
    # stable sort of the negated values: ties keep the lower index first
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    data = np.empty(order.shape, dtype=object)
    for row, indices in enumerate(order):
        data[row] = [f"{values[row, i]!s}:{i}:{class_names[i]}".encode() for i in indices.tolist()]
    return InferTensor(tensor.name, "BYTES", tuple(data.shape), data)
