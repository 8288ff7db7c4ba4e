"""tritonclient.grpc against the real server of conftest.py: inference, typed contents,
oversized messages, access lines and metrics."""

from __future__ import annotations

import json
import time

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
from tritonclient.utils import InferenceServerException

from tests.service.conftest import Digits
from tests.service.v2.clients import (
    EVERY_OUTPUT,
    GRPC_KEY,
    check_outputs,
    grpc_url,
    inputs_for,
    v1_predictions,
)
from tests.service_process import Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


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
