"""`python -m bench`: the project measured against its own limits and against the alternatives.

One run measures serving through real uvicorn processes (micro-batching on and off, beside a
no-op endpoint, a decode-only endpoint and a naive per-request endpoint), the model's raw batched
forward, the grad-norm OOD path, SGLD (service, bare sampler, an official-JEM-style loop) and
training speed, then checks the targets. See docs/benchmarks.md.
"""

__all__: list[str] = []
