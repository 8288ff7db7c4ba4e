"""Triton's model configuration and classification extensions over REST, in-process; request
bodies built and responses read by tritonclient.http's own encoder and decoder, the config
checked against Triton's own `ModelConfig` message (tritonclient.grpc.model_config_pb2)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as th
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2

from tests.service.conftest import Digits, make_settings, serve

pytestmark = pytest.mark.anyio
INFER = "/v2/models/served/infer"


async def test_config_describes_the_served_model(
    client: httpx.AsyncClient, store_root: Path
) -> None:
    r = await client.get("/v2/models/served/config")
    assert r.status_code == 200, r.text
    config = r.json()
    # every field and enum name is Triton's: its own message parses the answer strictly
    parsed = json_format.ParseDict(config, model_config_pb2.ModelConfig())
    assert parsed.name == "served"
    assert list(parsed.version_policy.specific.versions) == [1]
    settings = make_settings(store_root)
    assert parsed.max_batch_size == settings.max_images_per_request
    batching = parsed.dynamic_batching
    assert batching.max_queue_delay_microseconds == round(settings.max_wait_ms * 1000)
    assert list(batching.preferred_batch_size) == [settings.max_batch_size]
    assert batching.default_queue_policy.max_queue_size == settings.queue_size
    assert [(g.kind, g.count) for g in parsed.instance_group] == [
        (model_config_pb2.ModelInstanceGroup.KIND_CPU, 1)
    ]
    assert json.loads(parsed.parameters["class_names"].string_value) == [str(d) for d in range(10)]
    assert parsed.parameters["calibrated"].string_value == "true"
    # the same tensors as the model metadata: [-1, *dims], the datatype under Triton's name
    meta = (await client.get("/v2/models/served")).json()
    names = {t: f"TYPE_{t}" for t in ("FP32", "UINT8", "INT64", "BOOL")} | {"BYTES": "TYPE_STRING"}
    for side in ("inputs", "outputs"):
        field = side.removesuffix("s")
        described = {t["name"]: ([-1, *t.get("dims", [])], t["data_type"]) for t in config[field]}
        expected = {t["name"]: (t["shape"], names[t["datatype"]]) for t in meta[side]}
        assert described == expected, side
    assert all(t["optional"] for t in config["input"])  # one of the three is sent
    versioned = await client.get("/v2/models/served/versions/1/config")
    assert versioned.json() == config
    plain = (await client.get("/v2/models/plain/config")).json()
    assert not any(t["name"].startswith("ood") for t in plain["output"])
    assert plain["parameters"]["calibrated"] == {"string_value": "false"}


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/v2/models/nope/config", 404, "nope"),
        ("/v2/models/served/versions/7/config", 404, "served version: 1"),
    ],
)
async def test_config_of_what_is_not_served(
    client: httpx.AsyncClient, path: str, status: int, message: str
) -> None:
    r = await client.get(path)
    assert r.status_code == status
    assert message in r.json()["error"]


async def test_config_needs_the_api_key(store_root: Path) -> None:
    async with serve(make_settings(store_root, api_keys=["k1"])) as client:
        assert (await client.get("/v2/models/served/config")).status_code == 401
        ok = await client.get("/v2/models/served/config", headers={"Authorization": "Bearer k1"})
        assert ok.status_code == 200


async def classify(
    client: httpx.AsyncClient, u8: np.ndarray, outputs: list[th.InferRequestedOutput]
) -> httpx.Response:
    tensor = th.InferInput("pixels_uint8", list(u8.shape), "UINT8")
    tensor.set_data_from_numpy(u8)
    body, json_size = th.InferenceServerClient.generate_request_body([tensor], outputs)
    headers = {} if json_size is None else {"Inference-Header-Content-Length": str(json_size)}
    return await client.post(INFER, content=body, headers=headers)


def decode(r: httpx.Response) -> th.InferResult:
    assert r.status_code == 200, r.text
    length = r.headers.get("inference-header-content-length")
    return th.InferResult.from_response_body(r.content, header_length=length and int(length))


@pytest.mark.parametrize("binary", [True, False])
async def test_classification_ranks_the_output_it_names(
    client: httpx.AsyncClient, digits: Digits, binary: bool
) -> None:
    u8 = digits.test_u8[:8, ..., None]
    plain = decode(
        await classify(
            client, u8, [th.InferRequestedOutput(n) for n in ("probabilities", "logits")]
        )
    )
    for name, k in (("probabilities", 3), ("logits", 1), ("probabilities", 99)):
        out = th.InferRequestedOutput(name, binary_data=binary, class_count=k)
        result = decode(await classify(client, u8, [out]))
        values = plain.as_numpy(name)
        top = result.as_numpy(name)
        shown = min(k, 10)  # a count above the classes gives every class
        assert top.shape == (8, shown)
        assert result.get_output(name)["datatype"] == "BYTES"
        for row, entries in enumerate(top):
            parts = [(e.decode() if isinstance(e, bytes) else e).split(":") for e in entries]
            indices = [int(i) for _, i, _ in parts]
            assert indices == np.argsort(-values[row], kind="stable")[:shown].tolist()
            assert [label for _, _, label in parts] == [str(i) for i in indices]  # class names
            # the value reads back as the very FP32 the plain output holds
            assert [np.float32(v) for v, _, _ in parts] == values[row, indices].tolist()


@pytest.mark.parametrize(
    ("output", "parameter", "message"),
    [
        ("probabilities", 0, "must be a positive integer"),
        ("probabilities", "3", "must be a positive integer"),
        ("probabilities", True, "must be a positive integer"),
        ("probabilities", 2.5, "must be a positive integer"),
        ("energy", 2, "applies to logits, probabilities"),
        ("nope", 2, "unknown output 'nope'"),
    ],
)
async def test_classification_refuses_what_it_cannot_rank(
    client: httpx.AsyncClient, digits: Digits, output: str, parameter: object, message: str
) -> None:
    body = {
        "inputs": [
            {
                "name": "pixels_uint8",
                "shape": [1, 8, 8, 1],
                "datatype": "UINT8",
                "data": digits.test_u8[0].ravel().tolist(),
            }
        ],
        "outputs": [{"name": output, "parameters": {"classification": parameter}}],
    }
    r = await client.post(INFER, json=body)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]


async def test_server_metadata_lists_the_extensions(client: httpx.AsyncClient) -> None:
    extensions = (await client.get("/v2")).json()["extensions"]
    assert set(extensions) == {"binary_tensor_data", "classification", "model_configuration"}
