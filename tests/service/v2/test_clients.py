"""Real clients against a real server: `python -m service` with /v2 and gRPC on, driven by
tritonclient.http (sync and aio) and tritonclient.grpc, unchanged, with their defaults and with
`binary_data=False`. API keys are on, so every call also goes through auth."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
import tritonclient.http.aio as tha
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from tests.service.conftest import Digits, png_bytes
from tests.service_process import Server, free_port, run_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = {"Authorization": "Bearer k1"}  # tritonclient.http adds to the dict it is given: copy
GRPC_KEY = {"authorization": "Bearer k1"}
EVERY_OUTPUT = [
    "logits", "probabilities", "label", "class_name", "energy", "max_softmax", "grad_norm",
    "ood_energy", "ood_max_softmax", "ood_grad_norm", "ood",
]  # fmt: skip


@pytest.fixture(scope="module")
def server(store_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("v2") / "server.log"
    port = free_port()
    with run_service(store_root, log, JEM_GRPC_PORT=str(port), JEM_API_KEYS="k1") as server:
        yield server


def grpc_url(server: Server) -> str:
    """host:port of the gRPC service, as its startup log line says."""
    return next(
        line.split('"address": "')[1].split('"')[0]
        for line in server.logs().splitlines()
        if "gRPC listening" in line
    )


def inputs_for(module: object, u8: np.ndarray, *, binary: bool) -> dict[str, object]:
    """The same images as each of the three input tensors (`module`: tritonclient.http/grpc)."""
    pngs = [png_bytes(a) for a in u8]
    blobs = pngs if binary else [base64.b64encode(b) for b in pngs]
    arrays = {
        "pixels": ((u8[:, None] / 127.5 - 1).astype(np.float32), "FP32"),
        "pixels_uint8": (u8[..., None], "UINT8"),
        "images": (np.array(blobs, dtype=object), "BYTES"),
    }
    out = {}
    for name, (array, datatype) in arrays.items():
        tensor = module.InferInput(name, list(array.shape), datatype)  # type: ignore[attr-defined]
        if module is th:
            tensor.set_data_from_numpy(array, binary_data=binary)
        else:
            tensor.set_data_from_numpy(array)
        out[name] = tensor
    return out


def v1_predictions(server: Server, u8: np.ndarray) -> tuple[list[int], np.ndarray]:
    files = [("files", (f"{i}.png", png_bytes(a))) for i, a in enumerate(u8)]
    r = httpx.post(
        f"{server.url}/v1/models/served/predict", files=files, headers=dict(KEY), timeout=60
    )
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    return [p["label"] for p in predictions], np.array([p["confidence"] for p in predictions])


def check_outputs(result: object, labels: list[int], confidence: np.ndarray) -> None:
    n = len(labels)
    got = result.as_numpy("label")  # type: ignore[attr-defined]
    assert got.tolist() == labels
    probs = result.as_numpy("probabilities")  # type: ignore[attr-defined]
    np.testing.assert_allclose(probs[np.arange(n), labels], confidence, rtol=1e-5)


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


def test_grpc_client(server: Server, digits: Digits) -> None:
    client = tg.InferenceServerClient(grpc_url(server))
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("served", headers=GRPC_KEY)
    meta = client.get_model_metadata("served", headers=GRPC_KEY)
    assert [i.name for i in meta.inputs] == ["pixels", "pixels_uint8", "images"]
    assert list(meta.inputs[0].shape) == [-1, 1, 8, 8]
    for n in (1, 64):
        u8 = digits.test_u8[:n]
        labels, confidence = v1_predictions(server, u8)
        for tensor in inputs_for(tg, u8, binary=True).values():
            outputs = [tg.InferRequestedOutput(o) for o in EVERY_OUTPUT]
            result = client.infer("served", [tensor], outputs=outputs, headers=GRPC_KEY)
            check_outputs(result, labels, confidence)
            assert result.as_numpy("ood").dtype == np.bool_
            assert result.as_numpy("class_name").tolist() == [str(v).encode() for v in labels]
    u8 = digits.test_u8[:2, ..., None]
    bad = [
        (tg.InferInput("pixels_uint8", [2, 8, 8, 1], "FP32"), u8.astype(np.float32), "UINT8"),
        (tg.InferInput("pixels_uint8", [2, 8, 4, 1], "UINT8"), u8[:, :, :4], "expected"),
        (
            tg.InferInput("pixels_uint8", [65, 8, 8, 1], "UINT8"),
            np.zeros((65, 8, 8, 1), np.uint8),
            "limit is 64",
        ),
        (tg.InferInput("images", [1], "BYTES"), np.array([b"garbage"], dtype=object), "image"),
    ]
    for tensor, array, message in bad:
        tensor.set_data_from_numpy(array)
        with pytest.raises(InferenceServerException) as info:
            client.infer("served", [tensor], headers=GRPC_KEY)
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT", info.value
        assert message in info.value.message()
    good = inputs_for(tg, u8[..., 0], binary=True)["pixels_uint8"]
    with pytest.raises(InferenceServerException) as info:
        client.infer("served", [good], outputs=[tg.InferRequestedOutput("nope")], headers=GRPC_KEY)
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException) as info:
        client.infer("served", [good])
    assert info.value.status() == "StatusCode.UNAUTHENTICATED"
    with pytest.raises(InferenceServerException) as info:
        client.infer("nope", [good], headers=GRPC_KEY)
    assert info.value.status() == "StatusCode.NOT_FOUND"
    client.close()


def test_grpc_typed_contents_and_metrics(server: Server, digits: Digits) -> None:
    """The protocol's other encoding (typed `contents` instead of raw bytes), with the
    protocol's own messages as tritonclient ships them."""
    u8 = digits.test_u8[:3]
    labels, _ = v1_predictions(server, u8)
    pb = tg.service_pb2
    request = pb.ModelInferRequest(model_name="served", id="r1")
    tensor = request.inputs.add(name="pixels_uint8", datatype="UINT8", shape=[3, 8, 8, 1])
    tensor.contents.uint_contents.extend(u8.reshape(-1).tolist())
    request.outputs.add(name="label")
    with grpc.insecure_channel(grpc_url(server)) as channel:
        stub = tg.service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(request, metadata=tuple(GRPC_KEY.items()))
    assert response.id == "r1"
    assert np.frombuffer(response.raw_output_contents[0], "<i8").tolist() == labels
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'endpoint="grpc_infer",model="served",status="200"' in metrics
    assert 'endpoint="grpc_infer",model="served",status="400"' in metrics
    assert 'endpoint="v2_infer",model="served",status="200"' in metrics


def test_grpc_oversized_message_is_refused_and_counted(server: Server) -> None:
    """A message over JEM_MAX_BODY_BYTES (8 MiB here) is RESOURCE_EXHAUSTED from the service,
    counted as 413 under its model as a REST body of that size is, before the API key is read;
    beyond RECEIVE_LIMIT_FACTOR times the limit gRPC's own transport limit refuses it."""
    from service.v2.grpc_server import RECEIVE_LIMIT_FACTOR

    limit = 8 * 1024 * 1024
    pb = tg.service_pb2

    def message(size: int) -> object:
        request = pb.ModelInferRequest(model_name="served", id="big")
        request.inputs.add(name="pixels_uint8", datatype="UINT8", shape=[size // 64, 8, 8, 1])
        request.raw_input_contents.append(bytes(size // 64 * 64))
        return request

    def count_413() -> float:
        text = httpx.get(f"{server.url}/metrics").text
        prefix = 'jem_requests_total{endpoint="grpc_infer",model="served",status="413"} '
        return sum(
            float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)
        )

    before = count_413()
    with grpc.insecure_channel(grpc_url(server)) as channel:
        stub = tg.service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(message(20_000_000))  # no key: the size is refused first
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = info.value.details() or ""
        assert f"the limit is {limit} (JEM_MAX_BODY_BYTES)" in details, details
        assert count_413() == before + 1
        # just over the limit is refused, just under it is served (as a 400: wrong shape)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(message(limit), metadata=tuple(GRPC_KEY.items()))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(message(limit - 4096), metadata=tuple(GRPC_KEY.items()))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert count_413() == before + 2
        # past gRPC's own receive limit the transport refuses it: not counted
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(message(RECEIVE_LIMIT_FACTOR * limit + 64))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "JEM_MAX_BODY_BYTES" not in (info.value.details() or "")
        # the server still answers
        assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert count_413() == before + 2


def test_grpc_calls_are_access_logged(server: Server, digits: Digits) -> None:
    """Each gRPC call, errors too, gets one `service.access` line with the REST line's fields;
    the request id is the client's (`x-request-id` metadata, or ModelInfer's `id`) and comes
    back as trailing metadata."""
    pb = tg.service_pb2
    request = pb.ModelInferRequest(model_name="served", id="infer-id-1")
    tensor = request.inputs.add(name="pixels_uint8", datatype="UINT8", shape=[1, 8, 8, 1])
    tensor.contents.uint_contents.extend(digits.test_u8[:1].reshape(-1).tolist())
    with grpc.insecure_channel(grpc_url(server)) as channel:
        stub = tg.service_pb2_grpc.GRPCInferenceServiceStub(channel)
        key = tuple(GRPC_KEY.items())
        _, call = stub.ModelInfer.with_call(request, metadata=key)
        assert ("x-request-id", "infer-id-1") in tuple(call.trailing_metadata())
        stub.ModelInfer(request, metadata=(*key, ("x-request-id", "grpc-log-ok")))
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelReady(
                pb.ModelReadyRequest(name="nope"), metadata=(*key, ("x-request-id", "grpc-log-404"))
            )
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert ("x-request-id", "grpc-log-404") in tuple(info.value.trailing_metadata())
        with pytest.raises(grpc.RpcError) as info:  # no API key
            stub.ServerMetadata(
                pb.ServerMetadataRequest(), metadata=(("x-request-id", "grpc-401"),)
            )
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED

    def access_lines() -> dict[str, dict[str, object]]:
        lines = [json.loads(x) for x in server.logs().splitlines() if x.startswith("{")]
        return {
            str(x["request_id"]): x
            for x in lines
            if x["logger"] == "service.access" and x.get("method") == "gRPC"
        }

    wanted = {"infer-id-1", "grpc-log-ok", "grpc-log-404", "grpc-401"}
    deadline = time.monotonic() + 10
    while not wanted <= access_lines().keys() and time.monotonic() < deadline:
        time.sleep(0.1)
    found = access_lines()
    assert wanted <= found.keys(), found
    ok = found["grpc-log-ok"]
    assert ok["msg"] == "request"
    assert ok["path"] == "/inference.GRPCInferenceService/ModelInfer"
    assert (ok["endpoint"], ok["model"], ok["status"]) == ("grpc_infer", "served", 200)
    assert isinstance(ok["latency_ms"], float)
    assert ok["latency_ms"] > 0
    assert found["infer-id-1"]["endpoint"] == "grpc_infer"
    missing = found["grpc-log-404"]
    assert (missing["endpoint"], missing["model"], missing["status"]) == (
        "grpc_model_ready",
        None,
        404,
    )
    assert (found["grpc-401"]["endpoint"], found["grpc-401"]["status"]) == (
        "grpc_server_metadata",
        401,
    )
    # once each
    lines = [
        x for x in server.logs().splitlines() if '"grpc-log-ok"' in x and "service.access" in x
    ]
    assert len(lines) == 1


def test_grpc_infer_counts_the_ood_decisions_it_returns(server: Server, digits: Digits) -> None:
    """As over REST (tests/service/test_metrics.py): `ood_max_softmax` is counted under its
    score, and no other score's decision is, as none was returned."""

    def checks() -> dict[str, float]:
        text = httpx.get(f"{server.url}/metrics").text
        counts = dict.fromkeys(("energy", "max_softmax", "grad_norm", "combined"), 0.0)
        for line in text.splitlines():
            if line.startswith('jem_ood_checks_total{model="served"'):
                score = line.split('score="')[1].split('"')[0]
                counts[score] += float(line.rsplit(" ", 1)[1])
        return counts

    u8 = digits.test_u8[:4]
    client = tg.InferenceServerClient(grpc_url(server))
    pixels = tg.InferInput("pixels_uint8", [4, 8, 8, 1], "UINT8")
    pixels.set_data_from_numpy(u8[..., None])
    for outputs, wanted in (
        (["ood_max_softmax"], {"max_softmax": 4.0}),
        (["label"], {}),
        (["ood"], {"combined": 4.0}),
    ):
        before = checks()
        client.infer(
            "served",
            [pixels],
            outputs=[tg.InferRequestedOutput(name) for name in outputs],
            headers=GRPC_KEY,
        )
        after = checks()
        assert {k: after[k] - before[k] for k in after if after[k] != before[k]} == wanted
    client.close()


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
        assert "no model repository or statistics" in info.value.message()
    http.close()
    client = tg.InferenceServerClient(grpc_url(server))
    for call in (
        lambda: client.get_model_repository_index(headers=GRPC_KEY),
        lambda: client.get_inference_statistics("served", headers=GRPC_KEY),
    ):
        with pytest.raises(InferenceServerException) as info:
            call()
        assert info.value.status() == "StatusCode.UNIMPLEMENTED"
    client.close()
