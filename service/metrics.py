"""Prometheus metrics; the names and labels are a contract with deploy/ (see ARCHITECTURE.md).

With `PROMETHEUS_MULTIPROC_DIR` set (required for `uvicorn --workers N`), every worker writes its
samples to files in that directory and `/metrics` aggregates all workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from service.server.workers import forget_dead_workers
from service.tally import Tally

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "multiprocess_dir"]

M = TypeVar("M", Counter, Gauge, Histogram)

# `*_created` series double the exposition and no dashboard here uses them.
disable_created_metrics()

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
GENERATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# Energies and OOD scores of different models and scores share one histogram per metric, so the
# buckets span several scales on both sides of zero.
SCORE_BUCKETS = (
    -200.0, -100.0, -50.0, -30.0, -20.0, -15.0, -10.0, -7.5, -5.0, -2.5, -1.0, -0.5, -0.1,
    0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 50.0, 100.0, 1000.0,
)  # fmt: skip


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


class Metrics:
    """All the service's metrics, registered in one registry (a fresh one per app by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[object, tuple[str, ...]], Counter | Gauge | Histogram] = {}
        # the per-request series' updates, written once per event-loop turn (service/tally.py)
        self.tally = Tally()
        r = self.registry
        self.requests = Counter(
            "jem_requests_total", "HTTP requests.", ["model", "endpoint", "status"], registry=r
        )
        self.request_duration = Histogram(
            "jem_request_duration_seconds", "HTTP request latency.", ["model", "endpoint"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_wait = Histogram(
            "jem_queue_wait_seconds", "Time a request waits for its batch.", ["model"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.compute = Histogram(
            "jem_compute_seconds", "Model compute time per batch.", ["model", "kind"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "jem_queue_depth", "Requests waiting in the batch queue.", ["model"],
            multiprocess_mode="livesum", registry=r,
        )  # fmt: skip
        self.queue_rejections = Counter(
            "jem_queue_rejections_total", "Requests refused because the queue was full.",
            ["model"], registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "jem_batch_size", "Images per forward pass.", ["model"], buckets=BATCH_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.images = Counter("jem_images_total", "Images classified.", ["model"], registry=r)
        self.ood_checks = Counter(
            "jem_ood_checks_total", "Calibrated OOD decisions made.", ["model", "score"],
            registry=r,
        )  # fmt: skip
        self.ood_flags = Counter(
            "jem_ood_flags_total", "Inputs flagged out-of-distribution.", ["model", "score"],
            registry=r,
        )  # fmt: skip
        self.ood_score = Histogram(
            "jem_ood_score", "OOD scores (higher = more OOD).", ["model", "score"],
            buckets=SCORE_BUCKETS, registry=r,
        )  # fmt: skip
        self.energy = Histogram(
            "jem_energy", "Energy E(x) of classified inputs.", ["model"], buckets=SCORE_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.model_info = Gauge(
            "jem_model_info", "Loaded model (value 1), where it runs and in what precision.",
            ["model", "version", "backbone", "device", "precision"],
            multiprocess_mode="livemax", registry=r,
        )  # fmt: skip
        self.device_memory = Gauge(
            "jem_device_memory_bytes",
            "Bytes held by tensors on the serving CUDA device (summed over workers); "
            "absent when serving on the CPU.",
            ["device"], multiprocess_mode="livesum", registry=r,
        )  # fmt: skip
        self.model_ready = Gauge(
            "jem_model_ready", "1 when the model is loaded and warm (min over workers).",
            ["model"], multiprocess_mode="livemin", registry=r,
        )  # fmt: skip
        self.generation_requests = Counter(
            "jem_generation_requests_total", "Generation requests.", ["model", "status"],
            registry=r,
        )  # fmt: skip
        self.sgld_steps = Counter(
            "jem_sgld_steps_total", "SGLD steps run (per chain batch).", ["model"], registry=r
        )
        self.generation_duration = Histogram(
            "jem_generation_duration_seconds", "Generation time.", ["model"],
            buckets=GENERATION_BUCKETS, registry=r,
        )  # fmt: skip

    def start_series(self, model: str, ood_scores: Iterable[str] = ()) -> None:
        """The counters that the dashboard and alerts show or divide by, at 0 for `model`
        before its first request, so that their panels read 0 rather than "No data" (a
        counter's series exists only once a label set is used): images, queue rejections,
        SGLD steps, generation requests that succeeded and, for each of `ood_scores` (the
        model's calibrated scores, and "combined" with them), OOD checks and flags. The
        request counters, whose label sets are open-ended, are left to the traffic."""
        for counter in (self.images, self.queue_rejections, self.sgld_steps):
            self.child(counter, model)
        self.child(self.generation_requests, model, "ok")
        for score in ood_scores:
            self.child(self.ood_checks, model, score)
            self.child(self.ood_flags, model, score)

    def child(self, metric: M, *labels: str) -> M:
        """`metric.labels(*labels)`, looked up once: prometheus_client checks and converts the
        values and takes a lock on every `labels()` call (~1.3 us; about eight per predict).
        For the per-request series only, whose children are never removed."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child  # type: ignore[return-value]  # the same metric's child: its type

    def exposition(self) -> bytes:
        """The text exposition: this process's registry, or every worker's in multiprocess mode."""
        self.tally.flush()  # this process's updates of this turn, before they are read
        if directory := multiprocess_dir():
            forget_dead_workers(directory)  # see service/server/workers.py for why here
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)

    @staticmethod
    def mark_process_dead(pid: int) -> None:
        if multiprocess_dir():
            multiprocess.mark_process_dead(pid)
