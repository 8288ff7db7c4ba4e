"""BentoML: `bentoml serve bench.peers.bentoml_service:Digits --port P`; POST /predict, multipart
`files`.

The framework's idiom: a `@bentoml.service` class with one worker and a batchable API; BentoML
merges the lists of files of concurrent requests up to 64 images per call (its adaptive batching
has a latency budget rather than a fixed wait).

BentoML 1.4.40's batching takes `max_batch_size` (default 100) and `max_latency_ms` (default
60,000) and nothing else (`bentoml.api`, _bentoml_sdk/decorators.py; the configuration file's
`batching` section adds only `enabled`). How long a batch waits for more requests is learned,
not set: `CorkDispatcher` holds a batch while `n * (age of the newest request + 1 ms + per-item
time) <= 0.95 * wait`, `wait` being the mean, over the last 50 batches and refreshed at most
every 5 s, of how long each batch's first request waited, time queued behind a busy model
included (`Optimizer`, `CorkDispatcher.controller`, bentoml/_internal/marshal/dispatcher.py).
After heavy load (the table's 64-image rows) that mean is 150-270 ms, so single requests at
concurrency 1 then wait about that long each, 4-7 req/s, until it decays (about 4 minutes of
steady concurrency-1 traffic, in a simulation of the dispatcher alone): a learned wait, not a
setting (docs/benchmarks-peers.md, twelfth part). `max_latency_ms` is the end-to-end SLO of
BentoML's "Adaptive batching" guide (a request the dispatcher predicts past it is answered
503); it does not set the wait, and a low one caps the learned wait only by rejecting requests
under load. 10 s is above every row's latency here, so no request is rejected.
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

    # max_latency_ms: an SLO no row reaches (no 503s), not a wait; see the module's docstring
    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=10_000)
    def predict(self, files: list[Path]) -> list[dict[str, Any]]:
        x = torch.stack([self.model.decode(f.read_bytes()) for f in files])
        return self.model.predict(x)
