"""Ray Serve: `python -m bench.peers.rayserve_app --port P`; POST /predict, multipart `files`.

The framework's idiom: one deployment (one replica) whose `__call__` reads the request and an
`@serve.batch` method (up to 64 requests, 5 ms wait) that runs the model; a local Ray instance
started by this process, Serve's HTTP proxy in front.

`max_ongoing_requests=MAX_BATCH`: a replica takes at most `max_ongoing_requests` requests at a
time (default 5 in ray 2.60.0: `DEFAULT_MAX_ONGOING_REQUESTS` in ray/serve/_private/constants.py),
so with the default `@serve.batch` never sees more than 5 requests and the proxy holds the rest,
re-trying the replica with a backoff of up to 0.5 s (`RAY_SERVE_ROUTER_RETRY_*_BACKOFF_S`, same
file): 5-53 req/s at concurrency 64 (docs/benchmarks-peers.md, twelfth part). Ray's own advice,
the warning `_BatchQueue._warn_if_max_batch_size_exceeds_max_ongoing_requests` logs at start-up
(ray/serve/batching.py; ray-project/ray#43288, #43840): `max_ongoing_requests` >=
`max_batch_size` * `max_concurrent_batches` (1, the default), i.e. 64.
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

import ray
import torch
from ray import serve
from starlette.requests import Request

from bench.peers.common import MAX_BATCH, MAX_WAIT_MS, load_model, split, stack


# max_ongoing_requests: see the module's docstring (Ray's advice for @serve.batch at 64)
@serve.deployment(num_replicas=1, max_ongoing_requests=MAX_BATCH, ray_actor_options={"num_cpus": 1})
class Digits:
    def __init__(self) -> None:
        self.model = load_model()

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=MAX_WAIT_MS / 1000)
    async def run(self, xs: list[torch.Tensor]) -> list[list[dict[str, Any]]]:
        x, sizes = stack(xs)
        return split(self.model.predict(x), sizes)

    async def __call__(self, request: Request) -> dict[str, Any]:
        form = await request.form()
        files = [await f.read() for f in form.getlist("files")]  # type: ignore[union-attr]
        x = torch.stack([self.model.decode(f) for f in files])
        return {"predictions": await self.run(x)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(Digits.bind(), route_prefix="/predict")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
