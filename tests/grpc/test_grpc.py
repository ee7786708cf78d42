"""The V2 protocol over gRPC, checked with tritonclient's gRPC client against its HTTP client.

This module imports tritonclient.grpc and autodep.grpc into one process: that
alone checks that their `inference.*` protobuf messages do not collide.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from google.protobuf import descriptor_pb2
from tritonclient.utils import InferenceServerException

from autodep.grpc import GrpcServer
from autodep.grpc import messages as pb
from autodep.testing.server import ServerProcess
from tests import models
from tests.support.images import image_bytes

# Each client blocks; the HTTP one (gevent) must stay on one thread.
HTTP_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="triton-http")
GRPC_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="triton-grpc")


class Clients:
    """The same server through tritonclient.http and tritonclient.grpc."""

    def __init__(self, service: Any, http_url: str, grpc_url: str) -> None:
        self.service = service
        self.http = HTTP_THREAD.submit(
            triton_http.InferenceServerClient, url=http_url.removeprefix("http://")
        ).result()
        self.grpc = GRPC_THREAD.submit(triton_grpc.InferenceServerClient, url=grpc_url).result()
        self.grpc_url = grpc_url

    async def both(self, method: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        """(HTTP answer, gRPC answer) to the same call, run off the server's event loop."""
        loop = asyncio.get_running_loop()
        return (
            await loop.run_in_executor(
                HTTP_THREAD, partial(getattr(self.http, method), *args, **kwargs)
            ),
            await loop.run_in_executor(
                GRPC_THREAD, partial(getattr(self.grpc, method), *args, **kwargs)
            ),
        )

    async def infer(
        self, array: np.ndarray, datatype: str, class_count: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """The model's output for the same input through both clients (raw binary data)."""
        results = []
        for module, thread in ((triton_http, HTTP_THREAD), (triton_grpc, GRPC_THREAD)):
            tensor = module.InferInput("input", list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            output = module.InferRequestedOutput("probabilities", class_count=class_count)
            client = self.http if module is triton_http else self.grpc
            call = partial(client.infer, "colors", [tensor], outputs=[output], request_id="r1")
            result = await asyncio.get_running_loop().run_in_executor(thread, call)
            results.append(result)
        http_result, grpc_result = results
        assert grpc_result.get_response().id == "r1"
        return http_result.as_numpy("probabilities"), grpc_result.as_numpy("probabilities")

    async def grpc_call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            GRPC_THREAD, partial(getattr(self.grpc, method), *args, **kwargs)
        )

    async def grpc_error(self, method: str, *args: Any, **kwargs: Any) -> InferenceServerException:
        with pytest.raises(InferenceServerException) as caught:
            await self.grpc_call(method, *args, **kwargs)
        return caught.value


@pytest.fixture
async def start_grpc() -> AsyncIterator[Any]:
    """start_grpc(server) -> Clients for its HTTP site and a gRPC server beside it."""
    started: list[GrpcServer] = []

    async def make(server: Any) -> Clients:
        grpc_server = GrpcServer(server.service.service)
        port = await grpc_server.start("127.0.0.1", 0)
        started.append(grpc_server)
        return Clients(server.service, server.url, f"127.0.0.1:{port}")

    yield make
    for grpc_server in started:
        await grpc_server.stop(grace=1)


@pytest.fixture
async def clients(serve, start_grpc, color_model) -> Clients:
    return await start_grpc(await serve(color_model, max_workers=1))


async def test_health_and_metadata_match_http(clients):
    for method, args in [
        ("is_server_live", ()),
        ("is_server_ready", ()),
        ("is_model_ready", ("colors",)),
    ]:
        assert await clients.both(method, *args) == (True, True), method
    http_meta, grpc_meta = await clients.both("get_server_metadata")
    assert (grpc_meta.name, grpc_meta.version) == (http_meta["name"], http_meta["version"])
    assert list(grpc_meta.extensions) == http_meta["extensions"]
    http_model, grpc_model = await clients.both("get_model_metadata", "colors")
    assert grpc_model.name == http_model["name"] == "colors"
    assert list(grpc_model.versions) == http_model["versions"]
    assert grpc_model.platform == http_model["platform"]
    for kind in ("inputs", "outputs"):
        as_dicts = [
            {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
            for t in getattr(grpc_model, kind)
        ]
        assert as_dicts == http_model[kind]


def red_and_blue() -> np.ndarray:
    batch = np.full((2, 3, 224, 224), -2.0, dtype=np.float32)
    batch[0, 0] = 2.0  # red
    batch[1, 2] = 2.0  # blue
    return batch


async def test_a_raw_fp32_batch_gives_the_http_answer_and_is_counted(clients):
    http_probs, grpc_probs = await clients.infer(red_and_blue(), "FP32")
    assert grpc_probs.shape == (2, 3) and grpc_probs.dtype == np.float32
    np.testing.assert_array_equal(grpc_probs, http_probs)
    assert grpc_probs.argmax(axis=1).tolist() == [0, 2]
    metrics = clients.service.metrics.render().decode()
    # Two requests went through HTTP, two through gRPC (the counter does not care which).
    assert 'autodep_requests_total{code="200",model="colors"} 2.0' in metrics


async def test_image_files_as_bytes_give_the_http_answer(clients):
    images = np.array([image_bytes("green"), image_bytes("red", "PNG")], dtype=np.object_)
    http_probs, grpc_probs = await clients.infer(images, "BYTES")
    np.testing.assert_array_equal(grpc_probs, http_probs)
    assert grpc_probs.argmax(axis=1).tolist() == [1, 0]


async def test_the_classification_extension_gives_the_http_answer(clients):
    images = np.array([image_bytes("green"), image_bytes("blue")], dtype=np.object_)
    http_top, grpc_top = await clients.infer(images, "BYTES", class_count=2)
    assert grpc_top.shape == (2, 2)
    assert grpc_top.tolist() == http_top.tolist()
    score, index, label = grpc_top[0][0].decode().split(":")
    assert (index, label) == ("1", "green") and 0.5 < float(score) <= 1
    assert grpc_top[1][0].decode().endswith(":2:blue")


async def model_infer(url: str, request: Any) -> Any:
    """One ModelInfer call made by hand (tritonclient always sends raw contents)."""
    async with grpc.aio.insecure_channel(url) as channel:
        infer = channel.unary_unary(
            f"/{pb.SERVICE}/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        return await infer(request)


async def test_typed_contents_give_the_answer_of_raw_contents(clients):
    batch = red_and_blue()
    request = pb.ModelInferRequest(model_name="colors", id="typed")
    spec = request.inputs.add(name="input", datatype="FP32", shape=batch.shape)
    spec.contents.fp32_contents.extend(batch.reshape(-1).tolist())
    output = request.outputs.add(name="probabilities")
    output.parameters["classification"].int64_param = 1
    response = await model_infer(clients.grpc_url, request)
    assert response.id == "typed"
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("probabilities", "BYTES", [2, 1])
    ]
    labels = [item.split(b":")[2] for item in _bytes_elements(response.raw_output_contents[0])]
    assert labels == [b"red", b"blue"]

    request = pb.ModelInferRequest(model_name="colors")
    spec = request.inputs.add(name="input", datatype="UINT8", shape=[1, 3, 224, 224])
    spec.contents.uint_contents.extend([300] * 3 * 224 * 224)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await model_infer(clients.grpc_url, request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "out of UINT8's range" in caught.value.details()


def _bytes_elements(raw: bytes) -> list[bytes]:
    from autodep.protocol.v2 import bytes_elements

    return bytes_elements(memoryview(raw), "output")


async def test_errors_have_their_grpc_status(clients):
    error = await clients.grpc_error("get_model_metadata", "missing")
    assert error.status() == "StatusCode.NOT_FOUND" and "missing" in error.message()
    error = await clients.grpc_error("is_model_ready", "missing")
    assert error.status() == "StatusCode.NOT_FOUND"
    tensor = triton_grpc.InferInput("input", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3), np.float32))
    error = await clients.grpc_error("infer", "colors", [tensor])
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert "each item must have shape" in error.message()
    error = await clients.grpc_error("infer", "nope", [tensor])
    assert error.status() == "StatusCode.NOT_FOUND"
    images = triton_grpc.InferInput("input", [1], "BYTES")
    images.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
    error = await clients.grpc_error("infer", "colors", [images])
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    # The server keeps serving.
    assert await clients.grpc_call("is_model_ready", "colors")


async def test_model_version_is_honoured(clients):
    tensor = triton_grpc.InferInput("input", [1, 3, 224, 224], "FP32")
    tensor.set_data_from_numpy(red_and_blue()[:1])
    error = await clients.grpc_error("infer", "colors", [tensor], model_version="7")
    assert error.status() == "StatusCode.NOT_FOUND" and "no ready version 7" in error.message()
    error = await clients.grpc_error("infer", "colors", [tensor], model_version="x")
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    error = await clients.grpc_error("is_model_ready", "colors", model_version="7")
    assert error.status() == "StatusCode.NOT_FOUND"
    result = await clients.grpc_call("infer", "colors", [tensor], model_version="1")
    assert result.get_response().model_version == "1"
    metrics = clients.service.metrics.render().decode()
    assert 'autodep_requests_total{code="404",model="colors"} 1.0' in metrics


def red_image_request(model: str) -> Any:
    """A ModelInfer request for one red JPEG, answered with its top class as "score:index:label"."""
    request = pb.ModelInferRequest(model_name=model)
    spec = request.inputs.add(name="input", datatype="BYTES", shape=[1])
    spec.contents.bytes_contents.append(image_bytes("red"))
    request.outputs.add(name="probabilities").parameters["classification"].int64_param = 1
    return request


async def test_a_reload_during_a_grpc_request_waits_for_it(
    serve, start_grpc, gated, model_dir, monkeypatch
):
    """As over HTTP (tests/repository/test_repository.py): the request finishes on the
    version it found."""
    monkeypatch.chdir(model_dir)  # a load names files inside the server's working directory
    model_path, gate = gated
    server = await serve(
        model_path, max_workers=1, max_total_workers=2, model_control_mode="explicit"
    )
    clients = await start_grpc(server)
    repository = server.service.repository
    old = server.service.model("gated")
    asking = asyncio.create_task(model_infer(clients.grpc_url, red_image_request("gated")))
    await gate.wait_entered(1)  # the request is inside the old version's model
    new_file = models.save(models.ReversedColorNet(), model_dir / "grpc-reversed.pt")
    entry = {"path": str(new_file)}
    body = {"parameters": {"config": json.dumps(entry)}}
    async with server.session.post(
        server.url + "/v2/repository/models/gated/load", json=body
    ) as response:
        assert response.status == 200, await response.text()
    assert server.service.model("gated") is not old  # the new version is routed...
    assert old.in_flight.count == 1  # ...and the old one waits for the request it holds
    assert repository.transitions["gated", "unloaded"] == 0
    gate.open()
    answer = await asyncio.wait_for(asking, 60)
    (top,) = _bytes_elements(answer.raw_output_contents[0])
    assert top.split(b":")[2] == b"red"  # wholly on the version it found
    await repository.wait_until(lambda: repository.transitions["gated", "unloaded"] == 1, 60)
    assert await clients.grpc_call("is_model_ready", "gated")


async def test_triton_only_rpcs_are_unimplemented(clients):
    for method, args in [
        ("get_inference_statistics", ()),
        ("get_model_repository_index", ()),
        ("get_model_config", ("colors",)),
    ]:
        error = await clients.grpc_error(method, *args)
        assert error.status() == "StatusCode.UNIMPLEMENTED", method
        assert "autodep does not implement" in error.message()
    async with grpc.aio.insecure_channel(clients.grpc_url) as channel:  # a streaming one
        stream = channel.stream_stream(f"/{pb.SERVICE}/ModelStreamInfer")
        call = stream(iter([pb.ModelInferRequest(model_name="colors").SerializeToString()]))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in call:
                pass
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_token_is_needed_except_for_health(serve, start_grpc, color_model):
    clients = await start_grpc(await serve(color_model, max_workers=1, auth_token="s3cret"))
    assert await clients.grpc_call("is_server_live")
    assert await clients.grpc_call("is_server_ready")
    error = await clients.grpc_error("get_model_metadata", "colors")
    assert error.status() == "StatusCode.UNAUTHENTICATED"
    error = await clients.grpc_error(
        "get_model_metadata", "colors", headers={"authorization": "Bearer wrong"}
    )
    assert error.status() == "StatusCode.UNAUTHENTICATED"
    for value in ("Bearer s3cret", "bearer s3cret", "BEARER  s3cret"):  # as HTTP reads it
        meta = await clients.grpc_call(
            "get_model_metadata", "colors", headers={"authorization": value}
        )
        assert meta.name == "colors", value


def test_serve_takes_grpc_port(color_model, tmp_path):
    flags = ["--model", str(color_model), "--grpc-port", "0", "--optimize", "off"]
    with ServerProcess("grpc", flags, tmp_path / "server.log") as server:
        address = server.wait_for_line(re.compile(r"over gRPC on (\S+)")).group(1)
        client = triton_grpc.InferenceServerClient(url=address)
        assert client.is_model_ready("colors")
        client.close()
        assert server.stop() == 0, "\n".join(server.lines)


def test_the_descriptor_set_is_compiled_from_the_proto(tmp_path):
    protoc = pytest.importorskip("grpc_tools.protoc")
    folder = Path(pb.__file__).parent
    out = tmp_path / "set.binpb"
    code = protoc.main(
        ["protoc", f"-I{folder}", f"--descriptor_set_out={out}", "grpc_predict_v2.proto"]
    )
    assert code == 0
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    committed = descriptor_pb2.FileDescriptorSet.FromString(
        (folder / "grpc_predict_v2.binpb").read_bytes()
    )
    assert fresh == committed, "regenerate with the command in grpc_predict_v2.proto"
