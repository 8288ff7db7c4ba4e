"""Everything one app instance holds: settings, metrics, loaded models, batchers, the SGLD pool."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping, Sequence

import torch

from model_store import ModelStore, StoreError
from model_store.names import parse_ref
from service.batching import BatchTiming, InFlight, MicroBatcher
from service.device import Placement
from service.errors import InvalidParameters, NotReady, ReloadRefused, UnknownModel
from service.generation import GenerationPool
from service.metrics import Metrics
from service.predictor import Predictor
from service.sampling import GenerationLimits
from service.settings import Settings

__all__ = ["COMBINED", "ModelsUnavailable", "Runtime"]

# `score` label of the combined OOD verdict (/v1 ood's `flagged`, v2's output `ood`) in
# jem_ood_checks_total / jem_ood_flags_total
COMBINED = "combined"

logger = logging.getLogger("service.runtime")
Outputs = dict[str, torch.Tensor]


class ModelsUnavailable(RuntimeError):  # noqa: N818 (reads as the condition, like NotReady)
    """A model to serve is missing or damaged at startup (JEM_EXIT_ON_LOAD_ERROR)."""


class Runtime:
    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.in_flight = InFlight()  # counted by the HTTP middleware and the gRPC server
        self.store = ModelStore(settings.model_store)
        # ValueError at construction (before any model loads) for a device that is not here
        self.placement = Placement.resolve(
            settings.device, settings.precision, retry_after_s=settings.retry_after_s
        )
        self.predictors: dict[str, Predictor] = {}
        self.refs: dict[str, str] = {}  # model name -> the reference it was started from
        # Batchers belong to one Predictor: a request that holds a replaced version still
        # finishes on it, with its own calibration.
        self._classify: dict[Predictor, MicroBatcher] = {}
        self._grad: dict[Predictor, MicroBatcher] = {}
        self._reload_lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        self.generation = GenerationPool(
            concurrency=settings.generation_concurrency,
            queue_size=settings.generation_queue_size,
            retry_after_s=max(settings.retry_after_s, 5),
        )
        self.limits = GenerationLimits(
            max_samples=settings.generation_max_samples,
            max_steps=settings.generation_max_steps,
            max_step_size=settings.generation_max_step_size,
            max_noise_std=settings.generation_max_noise_std,
        )
        self.ready = False
        self.reason = "loading models: " + ", ".join(settings.models)
        self._loader: asyncio.Task[None] | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    def check_models(self) -> None:
        """Fail fast on a broken store: every model to serve resolves, its manifest parses and,
        with JEM_VERIFY_CHECKSUMS, each file's size and sha256 match (no weights are built).

        Raises:
            ModelsUnavailable: the first model that fails, with the store's reason (logged).
        """
        for ref in self.settings.models:
            try:
                if self.settings.verify_checksums:
                    self.store.verify(ref)
                else:
                    self.store.manifest(ref)
            except (StoreError, OSError) as exc:
                reason = f"model {ref!r} cannot be served: {exc}"
                logger.error(reason, extra={"model": ref})
                raise ModelsUnavailable(reason) from None

    def start(self) -> None:
        """Load, verify and warm up the models in the background; /readyz says when done."""
        if self.settings.torch_threads is not None:
            torch.set_num_threads(self.settings.torch_threads)
        for ref in self.settings.models:  # 0 until loaded: alerts see a model that never came up
            self.metrics.model_ready.labels(ref.split(":")[0]).set(0)
            self.metrics.start_series(ref.split(":")[0])  # the dashboard's counters, at 0
        self._loader = asyncio.get_running_loop().create_task(self._load_all())

    async def _load_all(self) -> None:
        for ref in self.settings.models:
            try:
                await self._load(ref)
            except Exception as exc:
                self.reason = f"model {ref!r} failed to load: {exc}"
                logger.error(self.reason, extra={"model": ref})
                return
        self.ready = True
        self.reason = "ready"
        logger.info("ready", extra={"models": sorted(self.predictors)})

    async def _load(self, ref: str) -> None:
        s = self.settings
        start = time.perf_counter()
        predictor = await self._prepare(ref, verify=s.verify_checksums, warmup=s.warmup)
        self._install(predictor)
        self.refs[predictor.name] = ref
        logger.info(
            "model loaded",
            extra={
                "model": predictor.name,
                "version": predictor.version,
                "calibrated": predictor.calibrated,
                "load_s": round(time.perf_counter() - start, 3),
            },
        )

    async def _prepare(self, ref: str, *, verify: bool, warmup: bool) -> Predictor:
        device = self.placement.device
        loaded = await asyncio.to_thread(self.store.load, ref, device=device, verify=verify)
        predictor = Predictor(loaded, self.placement)
        if warmup:
            await asyncio.to_thread(predictor.warmup)
        return predictor

    def _install(self, predictor: Predictor) -> None:
        s = self.settings
        name = predictor.name
        for kind, fn, size, batchers in [
            ("classify", predictor.classify_batch, s.max_batch_size, self._classify),
            ("grad", predictor.grad_batch, s.grad_max_batch_size, self._grad),
        ]:
            batcher = MicroBatcher(
                fn,
                model=name,
                kind=kind,
                metrics=self.metrics,
                max_batch_size=size,
                max_wait_s=s.max_wait_ms / 1000,
                queue_size=s.queue_size,
                timeout_s=s.request_timeout_s,
                retry_after_s=s.retry_after_s,
                stack=predictor.placement.stack,
                in_flight=self.in_flight,
            )
            batcher.start()
            batchers[predictor] = batcher
        self.predictors[name] = predictor  # one assignment: the swap new requests see
        self.metrics.model_info.labels(*self._info_labels(predictor)).set(1)
        self.metrics.model_ready.labels(name).set(1)
        scores = [*predictor.scores, COMBINED] if predictor.scores else []
        self.metrics.start_series(name, scores)  # its OOD counters at 0 too, once known
        self.observe_device_memory()

    def _info_labels(self, predictor: Predictor) -> tuple[str, ...]:
        where = predictor.placement
        version = str(predictor.version)
        return (predictor.name, version, predictor.backbone, str(where.device), where.precision)

    def observe_device_memory(self) -> None:
        """Set jem_device_memory_bytes from the allocator; no series at all on the CPU."""
        used = self.placement.memory_allocated()
        if used is not None:
            self.metrics.device_memory.labels(str(self.placement.device)).set(used)

    async def reload(self, name: str, ref: str | None = None) -> tuple[Predictor, Predictor]:
        """Serve another version of `name` (default: its startup reference, resolved again).

        The candidate must pass checksum verification and a test forward pass before it
        replaces the current version; otherwise ReloadRefused, and the current one keeps
        serving. Requests already holding the old version finish on it. Returns (old, new).
        """
        self.predictor(name)  # UnknownModel / NotReady
        target = ref if ref is not None else self.refs[name]
        try:
            ref_name = parse_ref(target)[0]
        except StoreError as exc:
            raise InvalidParameters(f"ref: {exc}") from None
        if ref_name != name:
            raise InvalidParameters(
                f"ref {target!r} names model {ref_name!r}; this route reloads {name!r} only"
            )
        async with self._reload_lock:
            current = self.predictors[name]
            still = f"still serving {name}:{current.version}"
            try:
                candidate = await self._prepare(target, verify=True, warmup=True)
            except (StoreError, ValueError, RuntimeError) as exc:
                raise ReloadRefused(
                    f"{target} was refused: {str(exc).rstrip('.')}; {still}"
                ) from None
            if candidate.spec != current.spec:
                raise ReloadRefused(
                    f"{target} expects input {candidate.spec.to_dict()}, the served version "
                    f"{current.spec.to_dict()}; serve it under a new name or restart; {still}"
                )
            if candidate.class_names != current.class_names:
                raise ReloadRefused(
                    f"{target} has other class names ({candidate.class_names}); serve it under "
                    f"a new name or restart; {still}"
                )
            self._install(candidate)
            if candidate.version != current.version:
                self.metrics.model_info.labels(*self._info_labels(current)).set(0)
            task = asyncio.get_running_loop().create_task(self._retire(current))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        logger.info(
            "model reloaded",
            extra={"model": name, "version": candidate.version, "previous": current.version},
        )
        return current, candidate

    async def _retire(self, predictor: Predictor) -> None:
        """Close a replaced version's batchers once every request that holds it is done."""
        await asyncio.sleep(self.settings.request_timeout_s)
        await self._close_batchers(predictor)

    async def _close_batchers(self, predictor: Predictor) -> None:
        batchers = [self._classify.pop(predictor, None), self._grad.pop(predictor, None)]
        await asyncio.gather(*(b.close() for b in batchers if b is not None))

    async def close(self) -> None:
        """Stop taking work, finish what is queued, release the threads."""
        self.ready = False
        self.reason = "shutting down"
        if self._loader is not None and not self._loader.done():
            self._loader.cancel()
        for name in self.predictors:
            self.metrics.model_ready.labels(name).set(0)
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*(b.close() for b in [*self._classify.values(), *self._grad.values()]))
        self.generation.close()
        self.metrics.tally.flush()  # the last requests' updates (service/tally.py)
        self.metrics.mark_process_dead(os.getpid())

    # ---- serving --------------------------------------------------------------------------

    def predictor(self, model: str) -> Predictor:
        predictor = self.predictors.get(model)
        if predictor is not None:
            return predictor
        if not self.ready:
            raise NotReady(f"not ready: {self.reason}", retry_after_s=self.settings.retry_after_s)
        known = ", ".join(sorted(self.predictors))
        raise UnknownModel(f"no model named {model!r} is served here; models: {known}")

    async def classify(self, predictor: Predictor, x: torch.Tensor) -> tuple[Outputs, BatchTiming]:
        try:
            return await self._batcher(self._classify, predictor).submit(x)
        finally:
            self.observe_device_memory()

    async def grad(self, predictor: Predictor, x: torch.Tensor) -> tuple[Outputs, BatchTiming]:
        try:
            return await self._batcher(self._grad, predictor).submit(x)
        finally:
            self.observe_device_memory()

    def _batcher(
        self, batchers: dict[Predictor, MicroBatcher], predictor: Predictor
    ) -> MicroBatcher:
        batcher = batchers.get(predictor)
        if batcher is None:  # held a replaced version for longer than JEM_REQUEST_TIMEOUT_S
            raise NotReady(
                f"{predictor.name}:{predictor.version} was replaced while this request waited; "
                "retry",
                retry_after_s=self.settings.retry_after_s,
            )
        return batcher

    def observe(
        self,
        model: str,
        energies: list[float],
        scores: Mapping[str, list[float]],
        decisions: Mapping[str, Sequence[bool | None]],
    ) -> None:
        """Count a request's images and energies, the OOD score values it returns (per score,
        `jem_ood_score`) and the OOD decisions it returns (per score, or `COMBINED` for the
        combined verdict: `jem_ood_checks_total` / `jem_ood_flags_total`; None, a score
        without a calibrated threshold, is no decision). Only what the answer holds is
        counted, whichever API (/v1, /v2 REST, gRPC) answered."""
        m = self.metrics
        tally = m.tally  # written once per event-loop turn (service/tally.py); children cached
        tally.inc(m.child(m.images, model), len(energies))
        tally.observe_all(m.child(m.energy, model), energies)
        for score, values in scores.items():
            tally.observe_all(m.child(m.ood_score, model, score), values)
        for score, flags in decisions.items():
            checked = [flag for flag in flags if flag is not None]
            if checked:
                tally.inc(m.child(m.ood_checks, model, score), len(checked))
                if any(checked):
                    tally.inc(m.child(m.ood_flags, model, score), sum(checked))
