"""BentoML: `bentoml serve bench.peers.bentoml_service:Digits --port P`; POST /predict, multipart
`files`.

The framework's idiom: a `@bentoml.service` class with one worker and a batchable API; BentoML
merges the lists of files of concurrent requests up to 64 images per call (its adaptive batching
has a latency budget rather than a fixed wait).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bentoml
import torch

from bench.peers.common import MAX_BATCH, load_model


@bentoml.service(workers=1)
class Digits:
    def __init__(self) -> None:
        self.model = load_model()

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=10_000)
    def predict(self, files: list[Path]) -> list[dict[str, Any]]:
        x = torch.stack([self.model.decode(f.read_bytes()) for f in files])
        return self.model.predict(x)
