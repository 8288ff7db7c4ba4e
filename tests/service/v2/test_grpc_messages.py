"""The committed gRPC modules: wire-compatible with Triton's own, and loadable beside them."""

from __future__ import annotations

import tritonclient.grpc as tg

from service.v2.proto import grpc_predict_v2_pb2 as pb
from service.v2.proto import grpc_predict_v2_pb2_grpc as pb_grpc


def test_messages_cross_the_wire_both_ways() -> None:
    ours = pb.ModelInferRequest(model_name="m", id="r")
    ours.inputs.add(name="pixels_uint8", datatype="UINT8", shape=[1, 8, 8, 1])
    ours.raw_input_contents.append(bytes(64))
    ours.outputs.add(name="label")
    theirs = tg.service_pb2.ModelInferRequest.FromString(ours.SerializeToString())
    assert (theirs.model_name, theirs.inputs[0].shape, theirs.outputs[0].name) == (
        "m",
        [1, 8, 8, 1],
        "label",
    )
    back = pb.ModelInferRequest.FromString(theirs.SerializeToString())
    assert back == ours
    # the same service name, so the same method paths on the wire
    assert pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name == (
        "inference.GRPCInferenceService"
    )
    assert hasattr(pb_grpc, "add_GRPCInferenceServiceServicer_to_server")


def _fields(descriptor: object) -> dict[str, tuple[int, int, str]]:
    return {
        f.name: (f.number, f.type, (f.message_type or f.enum_type or f).full_name)  # type: ignore[attr-defined]
        for f in descriptor.fields  # type: ignore[attr-defined]
    }


def test_model_config_subset_matches_triton_field_for_field() -> None:
    """Every message, field and enum value of the model configuration extension kept here is
    Triton's (same number, type and name), so its parsers read what this service writes."""
    theirs = tg.model_config_pb2.DESCRIPTOR
    ours = pb.DESCRIPTOR
    pending = [ours.message_types_by_name["ModelConfig"]]
    seen = set()
    while pending:
        message = pending.pop()
        if message.full_name in seen:
            continue
        seen.add(message.full_name)
        if message.GetOptions().map_entry:  # a map's entry: its value type is checked
            pending.extend(f.message_type for f in message.fields if f.message_type)
            continue
        triton = tg.model_config_pb2.DESCRIPTOR.pool.FindMessageTypeByName(message.full_name)
        mine = _fields(message)
        assert mine.items() <= _fields(triton).items(), message.full_name
        for field in message.fields:
            if field.message_type is not None:
                pending.append(field.message_type)
            if field.enum_type is not None:
                values = {v.name: v.number for v in field.enum_type.values}
                found = theirs.pool.FindEnumTypeByName(field.enum_type.full_name)
                assert values.items() <= {v.name: v.number for v in found.values}.items()
    assert {"inference.ModelInstanceGroup", "inference.ModelParameter"} <= seen
    for name in ("ModelConfigRequest", "ModelConfigResponse"):
        triton = tg.service_pb2.DESCRIPTOR.message_types_by_name[name]
        assert _fields(ours.message_types_by_name[name]) == _fields(triton)
