"""The Open Inference Protocol (KServe V2): request objects, inference, JSON.

Both front ends translate into the same objects: the HTTP routes parse V2 JSON
(and binary data) with `parse_request`, the gRPC service (`autodep.grpc`) reads
protobuf messages; each builds `Tensor`s with `tensor` or `tensor_from_raw`,
calls `infer` and turns the `InferResponse` back into its wire format.

One logical input per model:
- BYTES `[N]`: N encoded items (image files, UTF-8 texts, .npy files), decoded
  by the model's codec exactly as /predict does;
- a numeric tensor `[N, ...]`: N ready model inputs (image and tensor models).
Each of the N items is one request to the pool, so they batch with others.

Outputs by model kind: `probabilities` FP32 [N, classes] (classification, with
the classification extension), `mask` UINT8 [N, H, W] (segmentation),
`detections` BYTES [N] of JSON (detection), `output` (raw).

The binary tensor data extension: a JSON header of `Inference-Header-Content-Length`
bytes, then each binary tensor's bytes in order; BYTES elements are each a
4-byte little-endian length and the bytes.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autodep.call import Call
from autodep.codecs import Options, Payload
from autodep.codecs.base import parse_json
from autodep.errors import InvalidInput
from autodep.pool.items import Inferred, Item
from autodep.repository.served import ServedModel
from autodep.version import __version__

EXTENSIONS = ["classification", "binary_tensor_data"]
NUMERIC = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
DATATYPE_OF = {dtype: name for name, dtype in NUMERIC.items()}
_LENGTH = struct.Struct("<I")
# A version number as a route or a gRPC field gives it: ASCII digits only (str.isdigit takes
# "²"), and short (int() refuses over 4,300 digits; no version is that large anyway).
_VERSION = re.compile(r"[0-9]{1,18}")


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray | list[bytes]  # numeric array in `shape`, or BYTES elements
    parameters: dict[str, Any] = field(default_factory=dict)
    binary: bool = False  # an output sent as binary data (HTTP's binary tensor data extension)


@dataclass
class RequestedOutput:
    name: str
    classification: int | None = None
    binary: bool | None = None  # HTTP only; None: the request's binary_data_output


@dataclass
class InferRequest:
    inputs: list[Tensor]
    outputs: list[RequestedOutput]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferResponse:
    model_name: str
    outputs: list[Tensor]
    id: str | None = None
    model_version: str = "1"


# -- metadata ----------------------------------------------------------------


def server_metadata() -> dict[str, Any]:
    return {"name": "autodep", "version": __version__, "extensions": EXTENSIONS}


def model_metadata(served: ServedModel) -> dict[str, Any]:
    config = served.config
    if config.input == "tensor":
        shape = [-1, *(config.input_shape or [-1])]
        inputs = [{"name": "input", "datatype": "FP32", "shape": shape}]
    else:
        inputs = [{"name": "input", "datatype": "BYTES", "shape": [-1]}]
    classes = len(config.label_names()) or -1
    outputs = {
        "classification": {"name": "probabilities", "datatype": "FP32", "shape": [-1, classes]},
        "segmentation": {"name": "mask", "datatype": "UINT8", "shape": [-1, -1, -1]},
        "detection": {"name": "detections", "datatype": "BYTES", "shape": [-1]},
        "raw": {"name": "output", "datatype": "FP32", "shape": [-1]},
    }[config.output]
    return {
        "name": config.name,
        "versions": [str(served.version)],
        "platform": "pytorch_torchscript",
        "inputs": inputs,
        "outputs": [outputs],
    }


# -- requests ----------------------------------------------------------------


def version_number(text: str | None) -> int | None:
    """A model version as a route or message names it ("" or None: the newest)."""
    if not text:
        return None
    if not _VERSION.fullmatch(text):
        raise InvalidInput(f"model version must be a whole number, not {text[:40]!r}")
    return int(text)


def item_count(datatype: str, shape: list[int]) -> int:
    """How many requests to the pool an input makes: each BYTES element, or each row."""
    if datatype == "BYTES":
        return math.prod(shape)
    return shape[0] if shape else 1


# Admission of a request's items as a whole (`Call.admit_items`): raises 413 or 503.
Admit = Callable[[int], None]


def check_items(name: str, datatype: Any, shape: Any, admit: Admit | None) -> None:
    """Refuse an input whose shape is malformed, then admit its items (`admit`).

    Called before the input's elements are parsed: a request of 200,000 empty BYTES
    elements, or one the queue has no room for, is refused before any of them (or any
    task for them) exists.
    """
    _check_type(name, datatype, shape)
    if admit is not None:
        admit(item_count(datatype, shape))


def parse_request(
    body: bytes, header_length: int | None, admit: Admit | None = None
) -> InferRequest:
    """A JSON body, or a JSON header followed by binary tensor data.

    `admit`: given each input's item count (BYTES elements, or rows) before its elements
    are parsed; it raises to refuse the request.
    """
    header_bytes = body if header_length is None else body[:header_length]
    if header_length is not None and not 0 < header_length <= len(body):
        raise InvalidInput("Inference-Header-Content-Length is outside the body")
    header = parse_json(header_bytes, "inference request")
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise InvalidInput('an inference request needs "inputs": [...]')
    binary = memoryview(body)[len(header_bytes) :]
    inputs = []
    for spec in header["inputs"]:
        tensor, used = _input_tensor(spec, binary, admit)
        binary = binary[used:]
        inputs.append(tensor)
    if len(binary):
        raise InvalidInput(f"{len(binary)} bytes of binary data belong to no input")
    requested = header.get("outputs") or []
    if not isinstance(requested, list):
        raise InvalidInput('"outputs" must be a list of {"name": ...} objects')
    outputs = [_requested_output(o) for o in requested]
    request_id = header.get("id")
    return InferRequest(
        inputs,
        outputs,
        None if request_id is None else str(request_id),
        _parameters(header, "the request"),
    )


def _parameters(spec: dict[str, Any], where: str) -> dict[str, Any]:
    """The optional "parameters" object of a request, an input or an output."""
    parameters = spec.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput(f'{where}: "parameters" must be an object')
    return parameters


def _input_tensor(spec: Any, binary: memoryview, admit: Admit | None) -> tuple[Tensor, int]:
    if not isinstance(spec, dict):
        raise InvalidInput("each input must be an object with name, shape, datatype, data")
    name = str(spec.get("name", ""))
    datatype: Any = spec.get("datatype")
    shape: Any = spec.get("shape")
    parameters = _parameters(spec, f"input {name!r}")
    size = parameters.get("binary_data_size")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= len(binary):
            raise InvalidInput(f"input {name!r}: binary_data_size exceeds the data sent")
        raw = binary[:size]
        return tensor_from_raw(name, datatype, shape, raw, parameters, admit), size
    if "data" not in spec:
        raise InvalidInput(f"input {name!r}: no data and no binary_data_size")
    check_items(name, datatype, shape, admit)
    return tensor(name, datatype, shape, _json_data(spec["data"], datatype, name), parameters), 0


def tensor(
    name: str,
    datatype: Any,
    shape: Any,
    data: np.ndarray | list[bytes],
    parameters: dict[str, Any] | None = None,
) -> Tensor:
    """An input tensor from flat elements, checked against its datatype and shape."""
    _check_type(name, datatype, shape)
    count = math.prod(shape)  # exact: a huge shape cannot overflow into a small count
    if len(data) != count:
        raise InvalidInput(f"input {name!r}: shape {shape} needs {count} elements, got {len(data)}")
    if isinstance(data, np.ndarray):
        data = data.reshape(shape)
    return Tensor(name, datatype, list(shape), data, parameters or {})


def tensor_from_raw(
    name: str,
    datatype: Any,
    shape: Any,
    raw: bytes | memoryview,
    parameters: dict[str, Any] | None = None,
    admit: Admit | None = None,
) -> Tensor:
    """An input tensor from its raw bytes: row-major elements, or length-prefixed BYTES."""
    check_items(name, datatype, shape, admit)
    raw = memoryview(raw)
    if datatype == "BYTES":
        data: np.ndarray | list[bytes] = bytes_elements(raw, name, limit=math.prod(shape))
    else:
        data = _numeric(raw, datatype, name)
    return tensor(name, datatype, shape, data, parameters)


def _check_type(name: str, datatype: Any, shape: Any) -> None:
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InvalidInput(f"input {name!r}: shape must be a list of non-negative integers")
    if not isinstance(datatype, str) or (datatype != "BYTES" and datatype not in NUMERIC):
        raise InvalidInput(f"input {name!r}: unsupported datatype {datatype!r}")


def _numeric(raw: memoryview, datatype: str, name: str) -> np.ndarray:
    dtype = NUMERIC[datatype]
    if len(raw) % dtype.itemsize:
        raise InvalidInput(f"input {name!r}: {len(raw)} bytes is not a whole number of {datatype}")
    return np.frombuffer(raw, dtype=dtype).copy()


def bytes_elements(raw: memoryview, name: str, limit: int | None = None) -> list[bytes]:
    """BYTES elements from their serialized form: each a 4-byte little-endian length, then it.

    More than `limit` elements are refused as soon as the one too many is reached.
    """
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if limit is not None and len(elements) == limit:
            raise InvalidInput(f"input {name!r}: more BYTES elements than its shape holds")
        if offset + 4 > len(raw):
            raise InvalidInput(f"input {name!r}: truncated BYTES element length")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidInput(f"input {name!r}: truncated BYTES element")
        elements.append(bytes(raw[offset : offset + length]))
        offset += length
    return elements


def _json_data(data: Any, datatype: str, name: str) -> np.ndarray | list[bytes]:
    try:
        flat = _flatten(data)
    except RecursionError:
        raise InvalidInput(f"input {name!r}: data is nested too deeply") from None
    if datatype == "BYTES":
        if not all(isinstance(x, str) for x in flat):
            raise InvalidInput(f"input {name!r}: BYTES data must be strings")
        return [x.encode("utf-8") for x in flat]
    try:
        return np.asarray(flat, dtype=NUMERIC[datatype])
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(f"input {name!r}: data is not all {datatype}") from None


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    return [x for item in data for x in _flatten(item)]


def _requested_output(spec: Any) -> RequestedOutput:
    if not isinstance(spec, dict) or "name" not in spec:
        raise InvalidInput("each requested output must be an object with a name")
    return requested_output(str(spec["name"]), _parameters(spec, f"output {spec['name']!r}"))


def requested_output(name: str, parameters: dict[str, Any]) -> RequestedOutput:
    """An output the client asks for, with the classification extension's parameter."""
    classification = parameters.get("classification")
    if classification is not None:
        Options(top_n=classification)  # checked as /predict's top_n is
    binary = parameters.get("binary_data")
    return RequestedOutput(name, classification, None if binary is None else bool(binary))


# -- inference ---------------------------------------------------------------


async def infer(call: Call, request: InferRequest) -> InferResponse:
    """Run every item of the request through the call's model version (each item one
    request to the pool, so that they batch with others)."""
    served = call.served
    if len(request.inputs) != 1:
        raise InvalidInput(
            f"model {served.config.name!r} takes one input, got {len(request.inputs)}"
        )
    items = _items(served, request.inputs[0])
    options = Options()
    if served.config.output == "detection":
        options = Options(threshold=request.parameters.get("threshold", 0.5))
    inferred = await asyncio.gather(*(call.infer(item) for item in items))
    tensors = await _outputs(call, request, list(inferred), options)
    return InferResponse(served.config.name, tensors, request.id, str(served.version))


def _items(served: ServedModel, tensor: Tensor) -> list[Item]:
    """The input's items: encoded ones as payloads (decoded in the worker), or tensors."""
    kind = served.config.input
    if tensor.datatype == "BYTES":
        assert isinstance(tensor.data, list)
        if not tensor.data:
            raise InvalidInput(f"input {tensor.name!r}: no items (shape {tensor.shape})")
        return [_payload(kind, item, tensor.name) for item in tensor.data]
    if kind == "text":
        raise InvalidInput("a text model takes BYTES input (UTF-8 strings)")
    array = tensor.data
    assert isinstance(array, np.ndarray)
    if array.ndim < 1 or array.shape[0] == 0:
        raise InvalidInput(f"input {tensor.name!r}: the first dimension is the batch of items")
    expected = served.codec.decoder.example()
    if expected:
        (shape, dtype), *_ = expected
        if tuple(array.shape[1:]) != tuple(shape):
            raise InvalidInput(
                f"input {tensor.name!r}: each item must have shape {list(shape)}, "
                f"got {list(array.shape[1:])}"
            )
        array = array.astype(dtype, copy=False)
    return [[np.ascontiguousarray(item)] for item in array]


def _payload(kind: str, item: bytes, name: str) -> Payload:
    if kind == "text":
        try:
            return Payload(item.decode("utf-8"), "text/plain")
        except UnicodeDecodeError:
            raise InvalidInput(f"input {name!r}: text must be UTF-8") from None
    return Payload(item, "application/x-npy" if kind == "tensor" else "")


async def _outputs(
    call: Call, request: InferRequest, inferred: list[Inferred], options: Options
) -> list[Tensor]:
    served = call.served
    kind = served.config.output
    name = model_metadata(served)["outputs"][0]["name"]
    requested = request.outputs or [RequestedOutput(name)]
    binary_default = bool(request.parameters.get("binary_data_output", False))
    tensors = []
    for wanted in requested:
        if wanted.name != name:
            raise InvalidInput(
                f"model {served.config.name!r} has no output {wanted.name!r}; it has {name!r}"
            )
        binary = binary_default if wanted.binary is None else wanted.binary
        if wanted.classification is not None:
            if kind != "classification":
                raise InvalidInput("the classification extension needs a classification model")
            top = Options(top_n=wanted.classification)
            results = [await call.encode(one, top) for one in inferred]
            strings = [
                [f"{p['score']:f}:{p['index']}:{p['label']}".encode() for p in r["predictions"]]
                for r in results
            ]
            width = max(len(row) for row in strings)
            flat = [s for row in strings for s in row + [b""] * (width - len(row))]
            tensors.append(_bytes_tensor(name, [len(strings), width], flat, binary))
        elif kind == "detection":
            items = [
                json.dumps((await call.encode(one, options))["detections"]).encode()
                for one in inferred
            ]
            tensors.append(_bytes_tensor(name, [len(items)], items, binary))
        else:
            tensors.append(_numeric_tensor(name, [one.outputs[0] for one in inferred], binary))
    return tensors


def _numeric_tensor(name: str, rows: list[np.ndarray], binary: bool) -> Tensor:
    if len({row.shape for row in rows}) != 1:
        raise InvalidInput("the items' outputs differ in shape; send them in separate requests")
    array = np.stack(rows)
    datatype = DATATYPE_OF.get(array.dtype)
    if datatype is None:
        array, datatype = array.astype(np.float32), "FP32"
    return Tensor(name, datatype, list(array.shape), array, binary=binary)


def _bytes_tensor(name: str, shape: list[int], items: list[bytes], binary: bool) -> Tensor:
    return Tensor(name, "BYTES", shape, items, binary=binary)


def raw_contents(tensor: Tensor) -> bytes:
    """A tensor's elements in the raw form (row-major, or length-prefixed BYTES)."""
    if isinstance(tensor.data, np.ndarray):
        return np.ascontiguousarray(tensor.data).tobytes()
    return b"".join(_LENGTH.pack(len(item)) + item for item in tensor.data)


def serialize_response(response: InferResponse) -> tuple[bytes, int | None]:
    """The JSON body, and the JSON header's length when binary tensors follow it."""
    outputs, parts = [], []
    for t in response.outputs:
        spec: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": t.shape}
        if t.binary:
            raw = raw_contents(t)
            spec["parameters"] = {"binary_data_size": len(raw)}
            parts.append(raw)
        elif isinstance(t.data, np.ndarray):
            spec["data"] = t.data.reshape(-1).tolist()
        else:
            spec["data"] = [item.decode("utf-8") for item in t.data]
        outputs.append(spec)
    body: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": outputs,
    }
    if response.id is not None:
        body["id"] = response.id
    header = json.dumps(body).encode()
    if not parts:
        return header, None
    return header + b"".join(parts), len(header)
