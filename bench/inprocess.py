"""`python -m bench.inprocess`: the app's own CPU per request, without HTTP or a load generator.

Drives `service.create_app()` directly over ASGI (no server, no sockets) with `--concurrency`
callers posting the benchmark's PNG upload to predict in a loop, and reports this process's
CPU time (`time.process_time()`: the event loop and the model thread) per request and the
request rate. What the ASGI app and the model cost, apart from uvicorn and from the load
generator that shares a 2-core machine with it in `python -m bench --peers`.

    .venv/bin/python -m bench.inprocess --images 1 --concurrency 8 --seconds 4
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path

from starlette.types import Message

from bench.loadgen import Body, multipart_body, png_bytes
from bench.models import digit_images, locate_model
from service.logs import configure_logging
from training.data import load_digits_dataset

__all__ = ["main"]


def _scope(path: str, body: Body) -> dict[str, object]:
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"accept", b"*/*"),
        (b"user-agent", b"python-httpx/0.28.1"),
        (b"content-type", body.content_type.encode()),
        (b"content-length", str(len(body.content)).encode()),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _run(path: str, body: Body, concurrency: int, seconds: float) -> tuple[int, float]:
    from service import create_app  # after the JEM_* variables are set

    app = create_app()

    async def one() -> None:
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body.content, "more_body": False}
            await asyncio.Event().wait()  # the client never goes away
            raise AssertionError("unreachable")

        status: list[int] = []

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(_scope(path, body), receive, send)
        if status != [200]:
            raise RuntimeError(f"predict answered {status}")

    count = 0
    stop = False

    async def caller() -> None:
        nonlocal count
        while not stop:
            await one()
            count += 1

    async with app.router.lifespan_context(app):
        while not app.state.runtime.ready:
            await asyncio.sleep(0.05)
        callers = [asyncio.create_task(caller()) for _ in range(concurrency)]
        await asyncio.sleep(0.5)  # warm-up
        cpu0, n0 = time.process_time(), count
        await asyncio.sleep(seconds)
        cpu, n = time.process_time() - cpu0, count - n0
        stop = True
        await asyncio.gather(*callers)
    return n, cpu


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    p.add_argument("--images", type=int, default=1, help="PNGs per request")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--store", type=Path, help="model store (default: the shipped one)")
    p.add_argument("--model", default="digits-jem")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--env", action="append", default=[], metavar="JEM_X=V")
    args = p.parse_args(argv)
    data = load_digits_dataset(seed=0)
    scratch = Path(tempfile.mkdtemp(prefix="jem-inprocess-"))
    source = locate_model(args.store, args.model, scratch, data)
    os.environ.update(
        JEM_MODEL_STORE=str(source.store),
        JEM_MODELS=source.ref,
        JEM_TORCH_THREADS=str(args.threads),
        JEM_MAX_BATCH_SIZE="64",
        JEM_MAX_WAIT_MS="5",
    )
    for item in args.env:
        key, _, value = item.partition("=")
        os.environ[key] = value
    # the access log is written as the server writes it, to a sink instead of stderr
    configure_logging("INFO")
    sink = open(os.devnull, "w")  # noqa: SIM115 (open for the whole run)
    for handler in logging.getLogger("service").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sink)
    body = multipart_body([png_bytes(a) for a in digit_images(data, args.images)])
    n, cpu = asyncio.run(
        _run(f"/v1/models/{source.name}/predict", body, args.concurrency, args.seconds)
    )
    print(
        f"{args.images} PNG(s) per request, concurrency {args.concurrency}: {n} requests in "
        f"{args.seconds:g} s, {n / args.seconds:,.0f} requests/s, "
        f"{cpu * 1000 / max(1, n):.3f} ms CPU per request"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
