"""The TorchServe handler (archived by `torchserve_run`): one worker, batches of up to 64 requests
gathered by TorchServe's front end for at most 5 ms.

TorchServe's idiom for several images in one request is one multipart field per image (its front
end keeps one value per field name), so a request's images are its fields in field order.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.peers.common import load_model, split, stack


class DigitsHandler:
    def __init__(self) -> None:
        self.initialized = False

    def initialize(self, context: Any) -> None:
        self.model = load_model()
        self.initialized = True

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
        xs = [torch.stack([self.model.decode(bytes(v)) for v in row.values()]) for row in data]
        x, sizes = stack(xs)
        return [{"predictions": p} for p in split(self.model.predict(x), sizes)]


_service = DigitsHandler()


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[dict[str, Any]] | None:
    """TorchServe's module-level entry point."""
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
