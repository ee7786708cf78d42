"""The Open Inference Protocol, checked with the official Triton client."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as triton

from tests.support.images import image_bytes
from tests.support.triton_client import client, in_thread


@pytest.fixture
async def server(serve, color_model):
    return await serve(color_model, max_workers=1)


async def test_server_and_model_metadata_and_readiness(server):
    c = client(server)
    assert await in_thread(c.is_server_live)
    assert await in_thread(c.is_server_ready)
    assert await in_thread(c.is_model_ready, "colors")
    assert not await in_thread(c.is_model_ready, "missing")
    meta = await in_thread(c.get_server_metadata)
    assert meta["name"] == "autodep"
    assert {"classification", "binary_tensor_data"} <= set(meta["extensions"])
    model = await in_thread(c.get_model_metadata, "colors")
    assert model["name"] == "colors"
    assert model["inputs"][0]["datatype"] == "BYTES"
    assert model["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]


@pytest.mark.parametrize("binary", [False, True])
async def test_infer_with_a_preprocessed_tensor(server, binary):
    batch = np.full((2, 3, 224, 224), -2.0, dtype=np.float32)
    batch[0, 0] = 2.0  # red
    batch[1, 2] = 2.0  # blue
    tensor = triton.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary)
    output = triton.InferRequestedOutput("probabilities", binary_data=binary)
    result = await in_thread(client(server).infer, "colors", [tensor], outputs=[output])
    probs = result.as_numpy("probabilities")
    assert probs.shape == (2, 3)
    assert probs.argmax(axis=1).tolist() == [0, 2]
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)


async def test_infer_with_encoded_images_and_the_classification_extension(server):
    images = np.array([image_bytes("green"), image_bytes("red")], dtype=np.object_)
    tensor = triton.InferInput("input", [2], "BYTES")
    tensor.set_data_from_numpy(images, binary_data=True)
    output = triton.InferRequestedOutput("probabilities", binary_data=True, class_count=2)
    result = await in_thread(client(server).infer, "colors", [tensor], outputs=[output])
    top = result.as_numpy("probabilities")
    assert top.shape == (2, 2)
    score, index, label = top[0][0].decode().split(":")
    assert (index, label) == ("1", "green") and 0.5 < float(score) <= 1
    assert top[1][0].decode().split(":")[2] == "red"


async def test_versioned_routes_and_errors_are_json(server):
    status, body = await server.get("/v2/models/colors/versions/1")
    assert status == 200 and body["name"] == "colors"
    bad = [
        (b"{}", 'needs "inputs"'),
        (b"not json", "invalid JSON"),
        (
            json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}).encode(),
            "no data",
        ),
        (
            json.dumps(
                {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1]}]}
            ).encode(),
            "needs 2 elements",
        ),
        (
            json.dumps(
                {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
            ).encode(),
            "each item must have shape",
        ),
    ]
    for body_bytes, words in bad:
        status, answer, _ = await server.predict(
            body_bytes, "/v2/models/colors/infer", content_type="application/json"
        )
        assert status == 400, answer
        assert words in answer["error"]
    status, answer, _ = await server.predict(b"{}", "/v2/models/nope/infer")
    assert status == 404 and "nope" in answer["error"]
