"""Triton's perf_analyzer against this service over REST and gRPC: `python -m bench.perf_analyzer`.

perf_analyzer is the C++ load generator Triton users measure inference servers with: it reads
the model's metadata and configuration (`GET /v2/models/{m}[/config]`, gRPC `ModelMetadata` /
`ModelConfig`), builds requests from them and an `--input-data` file, and reports throughput and
latency percentiles per concurrency. It runs from its own venv (`.venv-perf-analyzer`, made from
the pinned `bench/perf_analyzer/requirements.txt` on first use). See docs/benchmarks.md,
"perf_analyzer".
"""
