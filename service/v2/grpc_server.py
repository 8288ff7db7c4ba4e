"""The Open Inference Protocol's gRPC service (`inference.GRPCInferenceService`).

Runs on the app's event loop beside uvicorn (started by the app's lifespan when JEM_GRPC_PORT is
set), so requests share the REST API's micro-batchers, limits and API keys. Needs the `grpc`
extra (grpcio, protobuf); nothing imports this module otherwise.
Metrics: `jem_requests_total` / `jem_request_duration_seconds` with endpoint `grpc_infer` (and
`grpc_<rpc>` for the others, `grpc_other` for those answered UNIMPLEMENTED); `status` is the
HTTP status the same outcome has on REST, so the alerts on 5xx rates cover both. A message
over JEM_MAX_BODY_BYTES is refused here, counted as 413 (RESOURCE_EXHAUSTED), without being
parsed; gRPC's own receive limit, above which the transport refuses it uncounted, is
`RECEIVE_LIMIT_FACTOR` times that. Every call, errors included, gets one `service.access` line
with the fields of a REST request's (docs/service.md, "Logs").
"""

from __future__ import annotations

import errno
import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format
from grpc import aio

from service.errors import BodyTooLarge, InvalidApiKey, InvalidInput, MissingApiKey, ServiceError
from service.logs import AccessLog, request_id_var
from service.middleware import VALID_ID
from service.runtime import Runtime
from service.v2 import GrpcPortInUseError, port_in_use_message
from service.v2.classification import PARAMETER
from service.v2.config import model_config
from service.v2.errors import NotProvided, grpc_code_name, http_status
from service.v2.grpc_messages import Oversized, input_tensor, leading_name, parameter_value
from service.v2.model import infer, model_metadata, resolve
from service.v2.proto import grpc_predict_v2_pb2 as pb
from service.v2.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from service.v2.rest import SERVER_METADATA
from service.v2.tensors import to_raw

__all__ = ["RECEIVE_LIMIT_FACTOR", "InferenceServicer", "start_grpc_server"]

logger = logging.getLogger("service.grpc")
T = TypeVar("T")

_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
SERVICE = _SERVICE.full_name  # "inference.GRPCInferenceService"
# gRPC receives a whole message before any code of ours sees it, so its own limit must sit above
# JEM_MAX_BODY_BYTES for the service to answer (and count) an oversized one; this bounds the
# memory one message may take before it is refused.
RECEIVE_LIMIT_FACTOR = 4
# endpoint label of each RPC in jem_requests_total / jem_request_duration_seconds
ENDPOINTS = {
    "ServerLive": "grpc_server_live",
    "ServerReady": "grpc_server_ready",
    "ServerMetadata": "grpc_server_metadata",
    "ModelReady": "grpc_model_ready",
    "ModelMetadata": "grpc_model_metadata",
    "ModelInfer": "grpc_infer",
    "ModelConfig": "grpc_model_config",
}
NOT_PROVIDED_ENDPOINT = "grpc_other"  # the RPCs of NOT_PROVIDED, as REST counts unknown routes

_RPCS = {endpoint: rpc for rpc, endpoint in ENDPOINTS.items()}
# every call's access line, as the REST middleware's (service.access, message "request")
_ACCESS_LINE = AccessLog(logging.getLogger("service.access"), "request")


def _request_id(context: aio.ServicerContext, fallback: str) -> str:
    """The client's `x-request-id` metadata, else `fallback`, when valid (as the REST
    middleware takes `X-Request-ID`); else 32 new random hex digits."""
    for key, value in context.invocation_metadata() or ():
        if key.lower() == "x-request-id" and isinstance(value, str) and VALID_ID.match(value):
            return value
    return fallback if fallback and VALID_ID.match(fallback) else os.urandom(16).hex()


def _check_key(runtime: Runtime, context: aio.ServicerContext) -> None:
    keys = runtime.settings.api_key_bytes()
    if not keys:
        return
    metadata = {k.lower(): v for k, v in context.invocation_metadata() or ()}
    scheme, _, given = str(metadata.get("authorization", "")).partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise MissingApiKey("this service needs an API key: send 'authorization: Bearer <key>'")
    matched = False
    for key in keys:  # every key, no early exit: timing reveals neither key nor position
        matched |= hmac.compare_digest(given.encode(), key)
    if not matched:
        raise InvalidApiKey("the API key is not valid for this service")


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def _call(
        self,
        context: aio.ServicerContext,
        endpoint: str,
        model: str,
        fn: Callable[[], Awaitable[T]],
        *,
        auth: bool = True,
        request_id: str = "",
        rpc: str = "",
    ) -> T:
        """Run `fn` as the RPC `endpoint` names: API key check, error mapping, metrics and one
        access line (as the REST middleware logs each request), with the request id of the
        client's `x-request-id` metadata, else `request_id` (ModelInfer's `id`) when it is a
        valid one, else a new one, on every line logged meanwhile and sent back as trailing
        metadata `x-request-id`."""
        start = time.perf_counter()
        status = 500
        rid = _request_id(context, request_id)
        token = request_id_var.set(rid)
        trailing: list[tuple[str, str]] = [("x-request-id", rid)]
        try:
            if auth:
                _check_key(self.runtime, context)
            result = await fn()
            status = 200
            context.set_trailing_metadata(tuple(trailing))
            return result
        except ServiceError as exc:
            status = http_status(exc)
            if exc.retry_after_s is not None:
                trailing.append(("retry-after", str(exc.retry_after_s)))
            context.set_trailing_metadata(tuple(trailing))
            await context.abort(grpc.StatusCode[grpc_code_name(exc)], exc.message)
            raise  # unreachable: abort raises
        finally:
            elapsed = time.perf_counter() - start
            m = self.runtime.metrics
            label = model if model in self.runtime.predictors else ""
            m.child(m.requests, label, endpoint, str(status)).inc()
            m.child(m.request_duration, label, endpoint).observe(elapsed)
            _ACCESS_LINE.log(
                {
                    "method": "gRPC",
                    "path": f"/{SERVICE}/{rpc or _RPCS[endpoint]}",
                    "endpoint": endpoint,
                    "model": label or None,
                    "status": status,
                    "latency_ms": round(elapsed * 1000, 3),
                }
            )
            request_id_var.reset(token)

    async def refuse_oversized(
        self, request: Oversized, context: aio.ServicerContext, endpoint: str
    ) -> Any:
        """RESOURCE_EXHAUSTED, counted as the 413 a REST body of that size gets (before the
        API key is checked, as on REST)."""

        async def run() -> Any:
            limit = self.runtime.settings.max_body_bytes
            raise BodyTooLarge(
                f"request message is {request.size} bytes; the limit is {limit} "
                "(JEM_MAX_BODY_BYTES): send fewer or smaller images per request"
            )

        return await self._call(context, endpoint, request.model, run, auth=False)

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        async def run() -> pb.ServerLiveResponse:
            return pb.ServerLiveResponse(live=True)

        return await self._call(context, ENDPOINTS["ServerLive"], "", run, auth=False)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        async def run() -> pb.ServerReadyResponse:
            return pb.ServerReadyResponse(ready=self.runtime.ready)

        return await self._call(context, ENDPOINTS["ServerReady"], "", run, auth=False)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        async def run() -> pb.ServerMetadataResponse:
            return pb.ServerMetadataResponse(
                name=str(SERVER_METADATA["name"]),
                version=str(SERVER_METADATA["version"]),
                extensions=list(SERVER_METADATA["extensions"]),
            )

        return await self._call(context, ENDPOINTS["ServerMetadata"], "", run)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        async def run() -> pb.ModelReadyResponse:
            resolve(self.runtime, request.name, request.version)
            return pb.ModelReadyResponse(ready=True)

        return await self._call(context, ENDPOINTS["ModelReady"], request.name, run)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        async def run() -> pb.ModelMetadataResponse:
            meta = model_metadata(resolve(self.runtime, request.name, request.version))
            tensor = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=meta["name"],
                versions=meta["versions"],
                platform=meta["platform"],
                inputs=[tensor(**t) for t in meta["inputs"]],
                outputs=[tensor(**t) for t in meta["outputs"]],
            )

        return await self._call(context, ENDPOINTS["ModelMetadata"], request.name, run)

    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: aio.ServicerContext
    ) -> pb.ModelConfigResponse:
        async def run() -> pb.ModelConfigResponse:
            predictor = resolve(self.runtime, request.name, request.version)
            config = model_config(predictor, self.runtime.settings)
            return pb.ModelConfigResponse(config=json_format.ParseDict(config, pb.ModelConfig()))

        return await self._call(context, ENDPOINTS["ModelConfig"], request.name, run)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: aio.ServicerContext
    ) -> pb.ModelInferResponse:
        async def run() -> pb.ModelInferResponse:
            predictor = resolve(self.runtime, request.model_name, request.model_version)
            raws = list(request.raw_input_contents)
            if raws and len(raws) != len(request.inputs):
                raise InvalidInput(
                    f"{len(raws)} raw_input_contents for {len(request.inputs)} inputs: "
                    "send one per input, or none and use contents"
                )
            inputs = [
                input_tensor(t, raws[i] if raws else None) for i, t in enumerate(request.inputs)
            ]
            names = [o.name for o in request.outputs] or None
            class_counts = {
                o.name: parameter_value(o.parameters[PARAMETER])
                for o in request.outputs
                if PARAMETER in o.parameters
            }
            result = await infer(self.runtime, predictor, inputs, names, class_counts)
            return pb.ModelInferResponse(
                model_name=result.model_name,
                model_version=result.model_version,
                id=request.id,
                outputs=[
                    pb.ModelInferResponse.InferOutputTensor(
                        name=t.name, datatype=t.datatype, shape=list(t.shape)
                    )
                    for t in result.outputs
                ],
                raw_output_contents=[to_raw(t) for t in result.outputs],
            )

        in_flight = self.runtime.in_flight  # counted as the HTTP middleware counts its requests
        in_flight.enter()
        try:
            return await self._call(
                context, ENDPOINTS["ModelInfer"], request.model_name, run, request_id=request.id
            )
        finally:
            in_flight.leave()


def _handlers(servicer: InferenceServicer, limit: int) -> dict[str, grpc.RpcMethodHandler]:
    """The service's method handlers, as the generated `add_..._to_server` makes them, except
    that a message over `limit` bytes is not parsed but answered by `refuse_oversized`."""
    handlers = {}
    for method in _SERVICE.methods:
        request_type = getattr(pb, method.input_type.name)
        response_type = getattr(pb, method.output_type.name)
        endpoint = ENDPOINTS[method.name]
        behavior = getattr(servicer, method.name)

        def deserialize(data: bytes, parse: Any = request_type.FromString) -> Any:
            if len(data) > limit:
                return Oversized(len(data), leading_name(data))
            return parse(data)

        async def handle(
            request: Any, context: aio.ServicerContext, behavior: Any = behavior, e: str = endpoint
        ) -> Any:
            if isinstance(request, Oversized):
                return await servicer.refuse_oversized(request, context, e)
            return await behavior(request, context)

        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            handle,
            request_deserializer=deserialize,
            response_serializer=response_type.SerializeToString,
        )
    for rpc, instead in NOT_PROVIDED.items():
        handlers[rpc] = _not_provided(servicer, rpc, instead)
    return handlers


_REPOSITORY = (
    "the model repository extension is not provided: models are chosen at start (JEM_MODELS) "
    "and swapped by POST /v1/admin/models/{model}/reload"
)
_SHARED_MEMORY = "shared memory is not provided: send the tensors in the request"
# Triton's RPCs beyond this service's: UNIMPLEMENTED with a message that says what to do instead
# (grpcio's own answer to an unknown method is a bare "Method not found!")
NOT_PROVIDED = {
    "ModelStreamInfer": "streaming inference is not provided: call ModelInfer",
    "ModelStatistics": "statistics are not provided: read GET /metrics (Prometheus)",
    "RepositoryIndex": _REPOSITORY,
    "RepositoryModelLoad": _REPOSITORY,
    "RepositoryModelUnload": _REPOSITORY,
    "SystemSharedMemoryStatus": _SHARED_MEMORY,
    "SystemSharedMemoryRegister": _SHARED_MEMORY,
    "SystemSharedMemoryUnregister": _SHARED_MEMORY,
    "CudaSharedMemoryStatus": _SHARED_MEMORY,
    "CudaSharedMemoryRegister": _SHARED_MEMORY,
    "CudaSharedMemoryUnregister": _SHARED_MEMORY,
    "TraceSetting": "trace settings are not provided",
    "LogSettings": "log settings are not provided: JEM_LOG_LEVEL sets the level at start",
}


def _not_provided(servicer: InferenceServicer, rpc: str, instead: str) -> grpc.RpcMethodHandler:
    """A handler that reads nothing and answers UNIMPLEMENTED, `rpc: instead`; logged and
    counted as every call is (endpoint `grpc_other`, status 404), before any API key check,
    as a REST call to a route the service lacks."""

    async def refuse(request: Any, context: aio.ServicerContext) -> None:
        async def run() -> None:
            raise NotProvided(f"{rpc}: {instead}")

        await servicer._call(context, NOT_PROVIDED_ENDPOINT, "", run, auth=False, rpc=rpc)

    async def refuse_stream(requests: Any, context: aio.ServicerContext) -> None:
        async for _ in requests:  # answered once the first request arrives (as a reply would)
            break
        await refuse(None, context)

    if rpc == "ModelStreamInfer":  # a bidirectional stream in Triton's service
        return grpc.stream_stream_rpc_method_handler(refuse_stream)
    return grpc.unary_unary_rpc_method_handler(refuse)


async def start_grpc_server(
    runtime: Runtime, host: str, port: int, *, share_port: bool = False
) -> tuple[aio.Server, int]:
    """Serve on `host:port` (0: a free port); returns the server and its bound port.

    A message over JEM_MAX_BODY_BYTES gets RESOURCE_EXHAUSTED from the service, counted as 413
    as a REST body is; gRPC itself refuses (uncounted) only beyond RECEIVE_LIMIT_FACTOR times it.
    `share_port`: bind with `SO_REUSEPORT`, to join the port `python -m service` reserved for
    its workers (`service.v2.reserve_grpc_port`); otherwise (grpcio enables it by default) a
    port another process holds is refused, as `GrpcPortInUseError`.
    """
    limit = runtime.settings.max_body_bytes
    server = aio.server(
        options=[
            ("grpc.max_receive_message_length", min(RECEIVE_LIMIT_FACTOR * limit, 2**31 - 1)),
            ("grpc.max_send_message_length", max(limit, 64 * 1024 * 1024)),
            ("grpc.so_reuseport", 1 if share_port else 0),
        ]
    )
    handlers = _handlers(InferenceServicer(runtime), limit)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpcio: "Failed to bind to address ..."; nothing says why
        raise GrpcPortInUseError(
            errno.EADDRINUSE, port_in_use_message(host, port, f"grpcio: {exc}")
        ) from None
    await server.start()
    logger.info("gRPC listening", extra={"address": f"{host}:{bound}"})
    return server, bound
