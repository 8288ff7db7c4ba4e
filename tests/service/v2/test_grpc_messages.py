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
