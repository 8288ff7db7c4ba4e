"""Real clients against a real server: `python -m service` with /v2 and gRPC on, driven by
tritonclient.http (sync and aio) and tritonclient.grpc, unchanged, with their defaults and with
`binary_data=False`. API keys are on, so every call also goes through auth. gRPC alone:
test_grpc_clients.py."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
import tritonclient.http.aio as tha
from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from tests.service.conftest import Digits
from tests.service.v2.clients import (
    EVERY_OUTPUT,
    GRPC_KEY,
    KEY,
    check_outputs,
    grpc_url,
    inputs_for,
    v1_predictions,
)
from tests.service_process import Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("binary", [True, False])
def test_http_client(server: Server, digits: Digits, binary: bool) -> None:
    client = th.InferenceServerClient(f"{server.host}:{server.port}")
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("served", headers=dict(KEY))
    assert not client.is_model_ready("served")  # no key: refused
    meta = client.get_model_metadata("served", headers=dict(KEY))
    assert [i["name"] for i in meta["inputs"]] == ["pixels", "pixels_uint8", "images"]
    for n in (1, 64):
        u8 = digits.test_u8[:n]
        labels, confidence = v1_predictions(server, u8)
        for name, tensor in inputs_for(th, u8, binary=binary).items():
            outputs = [th.InferRequestedOutput(o, binary_data=binary) for o in EVERY_OUTPUT]
            result = client.infer("served", [tensor], outputs=outputs, headers=dict(KEY))
            check_outputs(result, labels, confidence)
            assert result.as_numpy("ood").shape == (n,), name
            assert result.as_numpy("logits").shape == (n, 10)
        # the defaults: every output but the gradient ones
        result = client.infer("served", [tensor], headers=dict(KEY))
        assert result.as_numpy("grad_norm") is None
        check_outputs(result, labels, confidence)
    client.close()


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_http_client_request_compression(server: Server, digits: Digits, algorithm: str) -> None:
    """tritonclient.http's `request_compression_algorithm`: the body arrives compressed, with
    `Content-Encoding`, binary tensor data and Inference-Header-Content-Length included."""
    client = th.InferenceServerClient(f"{server.host}:{server.port}")
    u8 = digits.test_u8[:16]
    labels, confidence = v1_predictions(server, u8)
    for binary in (True, False):
        for tensor in inputs_for(th, u8, binary=binary).values():
            outputs = [th.InferRequestedOutput(o, binary_data=binary) for o in EVERY_OUTPUT]
            result = client.infer(
                "served",
                [tensor],
                outputs=outputs,
                headers=dict(KEY),
                request_compression_algorithm=algorithm,
            )
            check_outputs(result, labels, confidence)
    client.close()


def test_http_bad_input_gets_400(server: Server, digits: Digits) -> None:
    client = th.InferenceServerClient(f"{server.host}:{server.port}")
    u8 = digits.test_u8[:2, ..., None]

    def tensor(name: str, array: np.ndarray, datatype: str) -> th.InferInput:
        t = th.InferInput(name, list(array.shape), datatype)
        t.set_data_from_numpy(array)
        return t

    cases = [
        ([tensor("pixels_uint8", u8.astype(np.float32), "FP32")], None, "must be UINT8"),
        ([tensor("pixels_uint8", u8[:, :, :4], "UINT8")], None, "expected [N, 8, 8, 1]"),
        ([tensor("pixels_uint8", u8, "UINT8")], ["nope"], "unknown output 'nope'"),
        (
            [tensor("pixels_uint8", np.zeros((65, 8, 8, 1), np.uint8), "UINT8")],
            None,
            "limit is 64",
        ),
        ([tensor("images", np.array([b"garbage"], dtype=object), "BYTES")], None, "not an image"),
    ]
    for inputs, outputs, message in cases:
        requested = [th.InferRequestedOutput(o) for o in outputs or []]
        with pytest.raises(InferenceServerException) as info:
            client.infer("served", inputs, outputs=requested or None, headers=dict(KEY))
        assert info.value.status() == "400", info.value
        assert message in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.infer("served", cases[0][0])  # no API key
    assert info.value.status() == "401"
    client.close()


def test_http_aio_client(server: Server, digits: Digits) -> None:
    u8 = digits.test_u8[:8]
    labels, confidence = v1_predictions(server, u8)

    async def run() -> object:
        client = tha.InferenceServerClient(f"{server.host}:{server.port}")
        try:
            assert await client.is_server_ready()
            tensor = inputs_for(th, u8, binary=True)["images"]
            return await client.infer("served", [tensor], headers=dict(KEY))  # type: ignore[list-item]
        finally:
            await client.close()

    check_outputs(asyncio.run(run()), labels, confidence)


def test_model_config_and_classification_over_both_transports(
    server: Server, digits: Digits
) -> None:
    """tritonclient's own calls and its own parsers (Triton's full ModelConfig message over
    gRPC): the same configuration over REST and gRPC, and the same top classes."""
    http = th.InferenceServerClient(f"{server.host}:{server.port}")
    client = tg.InferenceServerClient(grpc_url(server))
    rest_config = http.get_model_config("served", headers=dict(KEY))
    grpc_config = client.get_model_config("served", headers=GRPC_KEY).config
    assert json_format.ParseDict(rest_config, model_config_pb2.ModelConfig()) == grpc_config
    assert grpc_config.max_batch_size == 64
    assert [i.name for i in grpc_config.input] == ["pixels", "pixels_uint8", "images"]
    assert "model_configuration" in client.get_server_metadata(headers=GRPC_KEY).extensions
    u8 = digits.test_u8[:4]
    labels, _ = v1_predictions(server, u8)
    answers = []
    for module, c, headers in ((th, http, dict(KEY)), (tg, client, GRPC_KEY)):
        tensor = inputs_for(module, u8, binary=True)["pixels_uint8"]
        out = module.InferRequestedOutput("probabilities", class_count=2)  # type: ignore[attr-defined]
        result = c.infer("served", [tensor], outputs=[out], headers=headers)  # type: ignore[attr-defined]
        top = result.as_numpy("probabilities")
        assert top.shape == (4, 2)
        assert [int(row[0].split(b":")[1]) for row in top] == labels
        answers.append(top.tolist())
    assert answers[0] == answers[1]
    bad = tg.InferRequestedOutput("energy", class_count=2)
    with pytest.raises(InferenceServerException) as info:
        client.infer("served", [tensor], outputs=[bad], headers=GRPC_KEY)
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "applies to logits, probabilities" in info.value.message()
    http.close()
    client.close()


def test_triton_extensions_not_provided_are_refused_plainly(server: Server) -> None:
    """As docs/service.md lists them: a 404 in the protocol's shape over REST, UNIMPLEMENTED
    over gRPC."""
    http = th.InferenceServerClient(f"{server.host}:{server.port}")
    for call in (
        lambda: http.get_model_repository_index(headers=dict(KEY)),
        lambda: http.get_inference_statistics("served", headers=dict(KEY)),
    ):
        with pytest.raises(InferenceServerException) as info:
            call()
        assert info.value.status() == "404"
        assert "no model repository or statistics, no shared memory" in info.value.message()
    http.close()
    client = tg.InferenceServerClient(grpc_url(server))
    for call, says in (
        (lambda: client.get_model_repository_index(headers=GRPC_KEY), "JEM_MODELS"),
        (lambda: client.get_inference_statistics("served", headers=GRPC_KEY), "GET /metrics"),
        (lambda: client.get_log_settings(headers=GRPC_KEY), "JEM_LOG_LEVEL"),
        (lambda: client.get_system_shared_memory_status(headers=GRPC_KEY), "in the request"),
    ):
        with pytest.raises(InferenceServerException) as info:
            call()
        assert info.value.status() == "StatusCode.UNIMPLEMENTED"
        assert says in info.value.message()
    # the stream as well: tritonclient's stream reports the error to its callback
    errors: list[object] = []
    client.start_stream(lambda result, error: errors.append(error), headers=GRPC_KEY)
    tensor = tg.InferInput("pixels_uint8", [1, 8, 8, 1], "UINT8")
    tensor.set_data_from_numpy(np.zeros((1, 8, 8, 1), np.uint8))
    client.async_stream_infer("served", [tensor])
    client.stop_stream()  # waits for the stream to end
    assert len(errors) == 1
    assert "streaming inference is not provided: call ModelInfer" in str(errors[0])
    client.close()
    # each refused RPC logged and counted as REST counts a route it lacks: 404, no model
    metrics = httpx.get(f"{server.url}/metrics", headers=dict(KEY), timeout=10).text
    refused = [
        s
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == "jem_requests_total" and s.labels["endpoint"] == "grpc_other"
    ]
    assert [(s.labels["status"], s.labels["model"], s.value) for s in refused] == [("404", "", 5)]
    log = server.log.read_text()
    for rpc in ("RepositoryIndex", "ModelStatistics", "LogSettings", "ModelStreamInfer"):
        assert f'"path": "/inference.GRPCInferenceService/{rpc}"' in log, rpc
