"""The protocol's message classes, built in a descriptor pool of autodep's own.

Generated `*_pb2.py` modules register their messages in protobuf's process-wide
default pool, and `tritonclient.grpc` (like MLServer and KServe) registers the
same `inference.*` names there from its own file: importing both fails with
"duplicate symbol 'inference.ServerLiveRequest'" (SeldonIO/MLServer#1730,
kserve/kserve#3099). A user's test that embeds autodep and calls it with
tritonclient's gRPC client must work, so the classes are made here from the
descriptor set that protoc compiled from `grpc_predict_v2.proto` (the command
is in that file), in a private pool. On the wire nothing differs: the service
path is `/inference.GRPCInferenceService/<Method>`.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERVICE = "inference.GRPCInferenceService"


def _classes() -> dict[str, Any]:
    data = resources.files(__package__).joinpath("grpc_predict_v2.binpb").read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(data).file
    classes: dict[str, Any] = message_factory.GetMessages(
        list(files), pool=descriptor_pool.DescriptorPool()
    )
    return classes


_BY_NAME = _classes()

# Message classes are built at run time: typed Any, their fields are those of the .proto.
ServerLiveRequest: Any = _BY_NAME["inference.ServerLiveRequest"]
ServerLiveResponse: Any = _BY_NAME["inference.ServerLiveResponse"]
ServerReadyRequest: Any = _BY_NAME["inference.ServerReadyRequest"]
ServerReadyResponse: Any = _BY_NAME["inference.ServerReadyResponse"]
ModelReadyRequest: Any = _BY_NAME["inference.ModelReadyRequest"]
ModelReadyResponse: Any = _BY_NAME["inference.ModelReadyResponse"]
ServerMetadataRequest: Any = _BY_NAME["inference.ServerMetadataRequest"]
ServerMetadataResponse: Any = _BY_NAME["inference.ServerMetadataResponse"]
ModelMetadataRequest: Any = _BY_NAME["inference.ModelMetadataRequest"]
ModelMetadataResponse: Any = _BY_NAME["inference.ModelMetadataResponse"]
ModelInferRequest: Any = _BY_NAME["inference.ModelInferRequest"]
ModelInferResponse: Any = _BY_NAME["inference.ModelInferResponse"]
InferTensorContents: Any = _BY_NAME["inference.InferTensorContents"]
