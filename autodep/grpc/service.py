"""`inference.GRPCInferenceService`: protobuf messages in, `autodep.protocol.v2` calls out.

Translation only: requests become the same `v2.InferRequest` objects the HTTP
routes make, run through the same `v2.infer` (same codecs, queue and batching),
and errors keep their meaning: the HTTP status of an `AutodepError` picks the
gRPC status code.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
import numpy as np

from autodep.errors import AutodepError, InvalidInput, internal_error
from autodep.grpc import messages as pb
from autodep.protocol import v2
from autodep.service import Service

# HTTP status of an AutodepError -> gRPC status (as grpc-gateway maps them back).
CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}

# Where typed (non-raw) tensor data lives in InferTensorContents, by datatype.
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

Method = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class InferenceService:
    """The six RPCs of the KServe V2 gRPC protocol over one `Service`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerReadyResponse(ready=self.service.ready)

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        served = self.service.model(request.name, v2.version_number(request.version))
        return pb.ModelReadyResponse(ready=served.pool.ready)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerMetadataResponse(**v2.server_metadata())

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        served = self.service.model(request.name, v2.version_number(request.version))
        meta = v2.model_metadata(served)
        return pb.ModelMetadataResponse(**meta)

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        version = v2.version_number(request.model_version)
        async with self.service.request(request.model_name, version) as call:
            parsed = infer_request(request, admit=call.admit_items)
            response = await v2.infer(call, parsed)
        return infer_response(response)

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        """The RPCs by name, then UNIMPLEMENTED for the rest of Triton's service."""
        table = {}
        for name in RPCS:
            request_type, response_type = RPCS[name]
            table[name] = grpc.unary_unary_rpc_method_handler(
                _answering(getattr(self, name)),
                request_deserializer=request_type.FromString,
                response_serializer=response_type.SerializeToString,
            )
        return [grpc.method_handlers_generic_handler(pb.SERVICE, table), _Unimplemented()]


RPCS: Mapping[str, tuple[Any, Any]] = {
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
}


def _answering(method: Method) -> Method:
    """The method, with autodep's errors answered as gRPC status codes."""

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(request, context)
        except Exception as exc:
            if isinstance(exc, AutodepError) and exc.status != 500:
                code, message = CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.message
            else:  # not the client's doing: the details are for the log
                code = grpc.StatusCode.INTERNAL
                message = internal_error(exc, f"gRPC {method.__name__}")
        await context.abort(code, message)

    return call


class _Unimplemented(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc has no types
    """Triton's other RPCs (statistics, repository, shared memory, streaming...)."""

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = str(handler_call_details.method)
        if not method.startswith(f"/{pb.SERVICE}/"):
            return None

        async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> None:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                f"autodep does not implement {method.rsplit('/', 1)[1]}; "
                f"it serves {', '.join(RPCS)}",
            )

        return grpc.unary_unary_rpc_method_handler(refuse)


# -- messages <-> v2 objects ---------------------------------------------------


def infer_request(message: Any, admit: v2.Admit | None = None) -> v2.InferRequest:
    raw = list(message.raw_input_contents)
    if raw and len(raw) != len(message.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs; "
            "send one per input, or typed contents"
        )
    inputs = []
    for index, spec in enumerate(message.inputs):
        shape, parameters = list(spec.shape), parameters_of(spec.parameters)
        if raw:
            tensor = v2.tensor_from_raw(
                spec.name, spec.datatype, shape, raw[index], parameters, admit
            )
        else:
            v2.check_items(spec.name, spec.datatype, shape, admit)
            tensor = v2.tensor(spec.name, spec.datatype, shape, _contents(spec, shape), parameters)
        inputs.append(tensor)
    outputs = [v2.requested_output(o.name, parameters_of(o.parameters)) for o in message.outputs]
    return v2.InferRequest(inputs, outputs, message.id or None, parameters_of(message.parameters))


def _contents(spec: Any, shape: list[int]) -> np.ndarray | list[bytes]:
    field = CONTENTS_FIELD.get(spec.datatype)
    if field is None:
        if spec.datatype in v2.NUMERIC:  # FP16 has no typed field
            raise InvalidInput(f"input {spec.name!r}: {spec.datatype} travels as raw contents")
        return []  # v2.tensor refuses the datatype
    values = getattr(spec.contents, field)
    if len(values) != math.prod(shape):  # before any copy: the shape has been bounded
        raise InvalidInput(
            f"input {spec.name!r}: shape {shape} needs {math.prod(shape)} elements, "
            f"got {len(values)}"
        )
    if spec.datatype == "BYTES":
        return list(values)
    try:
        return np.asarray(values, dtype=v2.NUMERIC[spec.datatype])
    except OverflowError:  # e.g. 300 in the uint_contents of a UINT8 tensor
        raise InvalidInput(
            f"input {spec.name!r}: a value is out of {spec.datatype}'s range"
        ) from None


def parameters_of(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """An InferParameter map as plain values."""
    result = {}
    for key, value in parameters.items():
        choice = value.WhichOneof("parameter_choice")
        if choice is not None:
            result[key] = getattr(value, choice)
    return result


def infer_response(response: v2.InferResponse) -> Any:
    """Every output as raw_output_contents, as Triton answers."""
    message = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id or ""
    )
    for tensor in response.outputs:
        message.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        message.raw_output_contents.append(v2.raw_contents(tensor))
    return message
