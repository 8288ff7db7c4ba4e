"""Triton's model configuration extension: what a served model's `config.pbtxt` would say.

`GET /v2/models/{m}[/versions/{v}]/config` answers it as JSON and the gRPC `ModelConfig` RPC as
the `inference.ModelConfig` message; both come from `model_config` below, a dict in the
protobuf's JSON form (field names as in Triton's model_config.proto), so the two cannot drift.
Spec: triton-inference-server/server docs/protocol/extension_model_configuration.md.

Every field describes what this service does, not a Triton setting it pretends to have:
`max_batch_size` is JEM_MAX_IMAGES_PER_REQUEST (images one request may carry),
`dynamic_batching` the micro-batcher of predict requests (JEM_MAX_WAIT_MS, JEM_MAX_BATCH_SIZE,
JEM_QUEUE_SIZE, JEM_REQUEST_TIMEOUT_S), `instance_group` one instance of the model in each of
the JEM_WORKERS processes, on the device it runs on. `dims` leave out the batch dimension, as
Triton's do, so `[-1, *dims]` is the shape ModelMetadata gives.
"""

from __future__ import annotations

import json
from typing import Any

from service.predictor import Predictor
from service.settings import Settings
from service.v2.model import PLATFORM, InputTensor, inputs_of, outputs_of

__all__ = ["CONFIG_TYPES", "model_config"]

# the protocol's datatypes as model_config.proto's DataType names (BYTES is TYPE_STRING there)
CONFIG_TYPES = {
    "BOOL": "TYPE_BOOL",
    "UINT8": "TYPE_UINT8",
    "INT64": "TYPE_INT64",
    "FP32": "TYPE_FP32",
    "BYTES": "TYPE_STRING",
}


def _parameters(predictor: Predictor) -> dict[str, dict[str, str]]:
    """What a client may want to know about the model and cannot read from its tensors."""
    spec = predictor.spec
    values = {
        "backbone": predictor.backbone,
        "class_names": json.dumps(predictor.class_names),
        "calibrated": "true" if predictor.calibrated else "false",
        "temperature": repr(predictor.temperature),
        "color_mode": spec.color_mode,
        "value_range": json.dumps(list(spec.value_range)),
        "normalization": spec.normalization or "none",
        "precision": predictor.placement.precision,
    }
    return {key: {"string_value": value} for key, value in values.items()}


def _instance_group(predictor: Predictor, settings: Settings) -> dict[str, Any]:
    device = predictor.placement.device
    group: dict[str, Any] = {
        "name": predictor.name,
        "kind": "KIND_GPU" if device.type == "cuda" else "KIND_CPU",
        "count": settings.workers,
    }
    if device.type == "cuda":
        group["gpus"] = [device.index or 0]
    return group


def _input(name: str, t: InputTensor) -> dict[str, Any]:
    # a request sends exactly one of the inputs: each is optional on its own
    entry: dict[str, Any] = {
        "name": name,
        "data_type": CONFIG_TYPES[t.datatype],
        "format": t.layout,
        "dims": list(t.shape),
        "optional": True,
    }
    if t.reshape is not None:
        entry["reshape"] = {"shape": list(t.reshape)}
    return entry


def model_config(predictor: Predictor, settings: Settings) -> dict[str, Any]:
    """The served model's configuration, in the JSON form of Triton's `ModelConfig`."""
    k = len(predictor.class_names)
    return {
        "name": predictor.name,
        "platform": PLATFORM,
        "version_policy": {"specific": {"versions": [predictor.version]}},
        "max_batch_size": settings.max_images_per_request,
        "input": [_input(name, t) for name, t in inputs_of(predictor).items()],
        "output": [
            {
                "name": name,
                "data_type": CONFIG_TYPES[output.datatype],
                "dims": [k] if output.per_class else [],
            }
            for name, output in outputs_of(predictor).items()
        ],
        "dynamic_batching": {
            "preferred_batch_size": [settings.max_batch_size],
            "max_queue_delay_microseconds": round(settings.max_wait_ms * 1000),
            "default_queue_policy": {
                "timeout_action": "REJECT",
                "default_timeout_microseconds": round(settings.request_timeout_s * 1e6),
                "max_queue_size": settings.queue_size,
            },
        },
        "instance_group": [_instance_group(predictor, settings)],
        "parameters": _parameters(predictor),
    }
