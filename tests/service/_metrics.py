"""Reading the service's Prometheus text in tests: request counts, and both workers' readiness;
a real service with two workers, started and waited for."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.service_process import Server, run_service


def requests_total(text: str, endpoint: str, status: str | None = None) -> float:
    """jem_requests_total for `endpoint` (and `status`, when given), summed over models."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "jem_requests_total"
        and sample.labels.get("endpoint") == endpoint
        and (status is None or sample.labels.get("status") == status)
    )


def wait_both_workers_ready(url: str, metrics_dir: Path, timeout_s: float = 120) -> None:
    """Until both of two workers have their model "served" loaded: /readyz is answered by one
    worker, and the min over workers of jem_model_ready is 1 only once both wrote their gauge."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = httpx.get(f"{url}/metrics").text
        both = len(list(metrics_dir.glob("gauge_livemin_*.db"))) == 2
        if both and 'jem_model_ready{model="served"} 1.0' in text:
            return
        assert time.monotonic() < deadline, text[-2000:]
        time.sleep(0.2)


@contextmanager
def two_workers(store_root: Path, tmp_path: Path, **kwargs: str) -> Iterator[tuple[Server, Path]]:
    """`python -m service --workers 2` with a multiprocess metrics directory (yielded with the
    server), once both workers have their model loaded; `kwargs` go to `run_service`."""
    metrics_dir = tmp_path / "prom"
    with run_service(
        store_root,
        tmp_path / "server.log",
        "--workers",
        "2",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        **kwargs,
    ) as server:
        wait_both_workers_ready(server.url, metrics_dir)
        yield server, metrics_dir
