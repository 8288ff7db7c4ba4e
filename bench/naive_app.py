"""The service app plus the endpoints it is compared against, served exactly like the service.

`python -m bench.naive_app --host H --port P` runs `service.create_app()` (same middleware,
same request parsing, same settings from JEM_*) with three more routes, under the very uvicorn
options `python -m service` uses:

- `POST /bench/noop/{model}`: receives and parses the multipart body like predict does, then
  answers at once. The ceiling of the HTTP stack.
- `POST /bench/decode/{model}`: also decodes the images into a tensor (`read_batch`), no model.
- `POST /bench/naive/{model}/predict`: what a user would write by hand: decode, call the model
  once per request right in the handler, return label, confidence, top-3 and energy.

These live here, not in `service/`, because they are yardsticks, not features.
"""

from __future__ import annotations

from typing import Any

import torch
from fastapi import FastAPI, Request
from starlette.datastructures import UploadFile

from service import Settings, create_app
from service.inputs import read_batch

__all__ = ["create_bench_app", "main"]


def create_bench_app(settings: Settings | None = None) -> FastAPI:
    app = create_app(settings)
    runtime = app.state.runtime

    @app.post("/bench/noop/{model}")
    async def noop(request: Request, model: str) -> dict[str, int]:
        limit = runtime.settings.max_images_per_request
        form = await request.form(max_files=limit, max_fields=limit, max_part_size=1024 * 1024)
        try:
            n = 0
            for _, value in form.multi_items():
                if isinstance(value, UploadFile):
                    await value.read()
                    n += 1
        finally:
            await form.close()
        return {"images": n}

    @app.post("/bench/decode/{model}")
    async def decode(request: Request, model: str) -> dict[str, int]:
        predictor = runtime.predictor(model)
        x = await read_batch(request, predictor.spec, runtime.settings)
        return {"images": int(x.shape[0])}

    @app.post("/bench/naive/{model}/predict")
    async def naive_predict(request: Request, model: str) -> dict[str, Any]:
        predictor = runtime.predictor(model)
        x = await read_batch(request, predictor.spec, runtime.settings)
        with torch.no_grad():  # the model, once per request, on the event loop
            logits = predictor.model(x)
        probs = torch.softmax(logits, dim=-1)
        energy = -torch.logsumexp(logits, dim=-1)
        top_p, top_i = probs.topk(3, dim=-1)
        names = predictor.class_names
        return {
            "predictions": [
                {
                    "label": int(i[0]),
                    "class_name": names[int(i[0])],
                    "confidence": float(p[0]),
                    "top_k": [
                        {"label": int(j), "class_name": names[int(j)], "probability": float(q)}
                        for j, q in zip(i, p, strict=True)
                    ],
                    "energy": float(e),
                }
                for i, p, e in zip(top_i, top_p, energy, strict=True)
            ]
        }

    return app


def __getattr__(name: str) -> Any:
    # `uvicorn bench.naive_app:app` asks for `app`; build it then, not on every import.
    if name == "app":
        return create_bench_app()
    raise AttributeError(name)


def main(argv: list[str] | None = None) -> None:
    """Serve this app with exactly the uvicorn options (and supervisor) of `python -m service`."""
    from service.__main__ import main as service_main

    service_main(argv, app="bench.naive_app:app")


if __name__ == "__main__":
    main()
