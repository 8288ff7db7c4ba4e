"""Open Inference Protocol (v2) bodies, encoded once as tritonclient encodes them, and a
closed-loop gRPC load generator to match loadgen.run_load's HTTP one.

REST bodies use the binary tensor data extension (tritonclient's default). gRPC requests are
serialised once and sent as raw bytes on a generic channel method, so the client spends its
time on gRPC, not on building protobuf messages.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import serialize_byte_tensor

from bench.loadgen import Body, LoadResult, Send, closed_loop, png_bytes

__all__ = ["GRPC_INFER", "OUTPUTS", "grpc_body", "run_grpc_load", "v2_rest_body"]

GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"
# what /v1/predict answers by default: label, calibrated confidence, energy and its OOD verdict
OUTPUTS = ("label", "probabilities", "energy", "ood_energy")


def _input(arrays: Sequence[np.ndarray], encoding: str) -> tuple[str, str, np.ndarray]:
    """(input name, datatype, data): PNG files as BYTES, or uint8 pixels [N, H, W, 1]."""
    if encoding == "png":
        return "images", "BYTES", np.array([png_bytes(a) for a in arrays], dtype=object)
    return "pixels_uint8", "UINT8", np.stack(arrays)[..., None]


def v2_rest_body(arrays: Sequence[np.ndarray], encoding: str) -> Body:
    """POST /v2/models/{m}/infer as tritonclient.http sends it (binary_data=True)."""
    name, datatype, data = _input(arrays, encoding)
    tensor = httpclient.InferInput(name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    outputs = [httpclient.InferRequestedOutput(o) for o in OUTPUTS]
    body, json_size = httpclient.InferenceServerClient.generate_request_body([tensor], outputs)
    headers = (("inference-header-content-length", str(json_size)),)
    return Body(bytes(body), "application/octet-stream", len(arrays), f"v2-{encoding}", headers)


def grpc_body(model: str, arrays: Sequence[np.ndarray], encoding: str) -> Body:
    """A serialised ModelInferRequest with raw_input_contents, as tritonclient.grpc builds it."""
    name, datatype, data = _input(arrays, encoding)
    request = grpcclient.service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name=name, datatype=datatype, shape=list(data.shape))
    raw = serialize_byte_tensor(data).item() if datatype == "BYTES" else data.tobytes()
    request.raw_input_contents.append(raw)
    for output in OUTPUTS:
        request.outputs.add(name=output)
    return Body(request.SerializeToString(), "application/grpc", len(arrays), f"grpc-{encoding}")


async def run_grpc_load(
    address: str, body: Body, *, concurrency: int, duration_s: float, warmup_s: float
) -> LoadResult:
    """Like loadgen.run_load, over gRPC: `concurrency` workers, each on its own channel."""
    channels = [grpc.aio.insecure_channel(address) for _ in range(concurrency)]

    def sender(channel: grpc.aio.Channel) -> Send:
        call = channel.unary_unary(GRPC_INFER)  # bytes in, bytes out: no (de)serialisers

        async def send() -> str:
            try:
                await call(body.content, timeout=60.0)
            except grpc.aio.AioRpcError as exc:
                return str(exc.code().name)
            return "OK"

        return send

    try:
        return await closed_loop(
            [sender(c) for c in channels],
            body.images,
            ok="OK",
            duration_s=duration_s,
            warmup_s=warmup_s,
        )
    finally:
        for channel in channels:
            await channel.close()
