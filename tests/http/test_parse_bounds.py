"""V2 requests are bounded while they are parsed, and every malformed field is a 4xx.

One binary request of 200,000 empty BYTES elements (0.76 MiB) used to become
200,000 asyncio tasks, stalling the event loop for seconds; JSON and gRPC's
`bytes_contents` the same. The bound (`--max-items-per-request`, by default the
queue's) refuses it as a 413 before the elements are parsed.
"""

from __future__ import annotations

import json
import struct

import grpc
import pytest

from autodep.grpc import GrpcServer
from autodep.grpc import messages as pb

MANY = 200_000
QUEUE = 16  # the test server's --max-queue, so also its --max-items-per-request


def binary_request(shape: list[int], elements: int) -> tuple[bytes, int]:
    """A binary V2 request of `elements` empty BYTES elements declared as `shape`."""
    raw = struct.pack("<I", 0) * elements
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": shape,
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    return header + raw, len(header)


async def post(server, path: str, body: bytes, headers: dict[str, str] | None = None):
    async with server.session.post(server.url + path, data=body, headers=headers) as response:
        return response.status, await response.json()


async def get(server, path: str):
    async with server.session.get(server.url + path) as response:
        return response.status, await response.json()


@pytest.fixture
async def server(serve, color_model):
    return await serve(color_model, max_workers=1, max_queue=QUEUE)


async def test_too_many_items_are_refused_before_they_are_parsed(server):
    infer = "/v2/models/colors/infer"
    body, length = binary_request([MANY], MANY)
    status, answer = await post(
        server, infer, body, {"Inference-Header-Content-Length": str(length)}
    )
    assert status == 413, answer
    assert f"{MANY:,} items in one request, more than the {QUEUE} allowed" in answer["error"]

    # Fewer declared than sent: parsing stops at the first element too many.
    body, length = binary_request([1], MANY)
    status, answer = await post(
        server, infer, body, {"Inference-Header-Content-Length": str(length)}
    )
    assert status == 400 and "more BYTES elements than its shape holds" in answer["error"]

    tensor = {"name": "input", "shape": [MANY], "datatype": "BYTES", "data": [""] * MANY}
    status, answer = await post(server, infer, json.dumps({"inputs": [tensor]}).encode())
    assert status == 413 and "items in one request" in answer["error"], answer

    rows = {"name": "input", "shape": [QUEUE + 1, 3, 224, 224], "datatype": "FP32", "data": []}
    status, answer = await post(server, infer, json.dumps({"inputs": [rows]}).encode())
    assert status == 413 and f"{QUEUE + 1} items in one request" in answer["error"], answer
    assert server.service.models["colors"].pool.queue_depth == 0


async def test_grpc_bytes_contents_are_bounded_too(server):
    grpc_server = GrpcServer(server.service)
    port = await grpc_server.start("127.0.0.1", 0)
    try:
        request = pb.ModelInferRequest(model_name="colors")
        tensor = request.inputs.add(name="input", datatype="BYTES", shape=[MANY])
        tensor.contents.bytes_contents.extend([b""] * MANY)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(
                f"/{pb.SERVICE}/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(request)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "items in one request" in str(caught.value.details())
            tensor.shape[:] = [1]  # declared one, sent 200,000: refused before they are copied
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(request)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await grpc_server.stop(grace=1)


async def test_malformed_v2_fields_are_4xx(server):
    empty = {"name": "input", "shape": [0], "datatype": "BYTES", "data": []}
    classification = {"name": "probabilities", "parameters": {"classification": 2}}
    body = json.dumps({"inputs": [empty], "outputs": [classification]}).encode()
    status, answer = await post(server, "/v2/models/colors/infer", body)
    assert status == 400 and "no items" in answer["error"], answer

    for version in ("²", "1" * 5000, "-1", "1.0", " 1"):
        status, answer = await get(server, f"/v2/models/colors/versions/{version}/ready")
        assert status == 400, (version[:10], answer)
        assert "model version must be a whole number" in answer["error"]
        assert len(answer["error"]) < 200  # the 5,000 digits are not echoed back
    status, answer = await get(server, "/v2/models/colors/versions/1/ready")
    assert status == 200, answer

    bomb = b'{"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": '
    bomb += b"[" * 100_000 + b"]" * 100_000 + b"}]}"
    status, answer = await post(server, "/v2/models/colors/infer", bomb)
    assert status == 400, answer
