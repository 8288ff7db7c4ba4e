"""LitServe: `python -m bench.peers.litserve_server --port P`; POST /predict with JSON
`{"images": [base64 PNG, ...]}`.

The framework's idiom: a `LitAPI` with decode/batch/predict/unbatch/encode, one inference worker,
requests batched up to 64 per forward pass, waiting at most 5 ms. Images come as base64 in JSON:
LitServe pickles each request over to its inference worker process, and a multipart upload
does not pickle.
"""

# no `from __future__ import annotations`: LitServe reads decode_request's annotation as a type
import argparse
import base64
from typing import Any

import litserve as ls
import torch

from bench.peers.common import MAX_BATCH, MAX_WAIT_MS, load_model, split, stack


class DigitsAPI(ls.LitAPI):  # type: ignore[misc]
    def setup(self, device: str) -> None:
        self.model = load_model()

    def decode_request(self, request: dict[str, Any]) -> torch.Tensor:
        images = [base64.b64decode(s, validate=True) for s in request["images"]]
        return torch.stack([self.model.decode(data) for data in images])

    def batch(self, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
        return stack(inputs)

    def predict(self, batch: tuple[torch.Tensor, list[int]]) -> list[list[dict[str, Any]]]:
        x, sizes = batch
        return split(self.model.predict(x), sizes)

    def unbatch(self, output: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
        return output

    def encode_response(self, output: list[dict[str, Any]]) -> dict[str, Any]:
        return {"predictions": output}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    api = DigitsAPI(max_batch_size=MAX_BATCH, batch_timeout=MAX_WAIT_MS / 1000)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(host=args.host, port=args.port, num_api_servers=1, generate_client_file=False)


if __name__ == "__main__":
    main()
