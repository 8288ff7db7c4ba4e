"""Ray Serve: `python -m bench.peers.rayserve_app --port P`; POST /predict, multipart `files`.

The framework's idiom: one deployment (one replica) whose `__call__` reads the request and an
`@serve.batch` method (up to 64 requests, 5 ms wait) that runs the model; a local Ray instance
started by this process, Serve's HTTP proxy in front.
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


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 1})
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
