"""Benchmark a deployed model with pytest-benchmark and autodep's pytest plugin.

    pytest examples/test_benchmark_model.py --autodep-model models/resnet18.pt
    pytest examples/test_benchmark_model.py --autodep-model m.pt --benchmark-json out.json

(add `-p autodep.testing` when autodep is not installed, e.g. from a checkout
with PYTHONPATH). The `autodep_server` fixture starts `python -m autodep.serve
--port 0` with the model once for all three tests and stops it at the end;
each test times one thing a client does:

    test_one_request         POST /predict with one JPEG, on a kept-alive connection
    test_v2_batch            one Open Inference Protocol request carrying BATCH JPEGs
                             (tritonclient, binary tensor data), run as one batch
    test_concurrent_requests BATCH clients posting one JPEG each at the same moment

Compare the mean of a batch test with BATCH x the one-request mean to see what
batching gains on this machine.
"""

from __future__ import annotations

import http.client
import io
import json
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from PIL import Image

from autodep.testing import LiveServer

BATCH = 8  # images per batch test: autodep's default --max-batch-size
pytestmark = pytest.mark.autodep_model(max_workers=1)  # the path: --autodep-model


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    """A 224x224 photo-like JPEG (gradients and noise)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:224, 0:224].astype(np.float32)
    pixels = np.stack([x, y, (x + y) / 2], axis=-1) + rng.normal(0, 20, (224, 224, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def connect(server: LiveServer) -> http.client.HTTPConnection:
    address = urllib.parse.urlsplit(server.url)
    return http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=60)


def predict(connection: http.client.HTTPConnection, jpeg: bytes) -> dict[str, Any]:
    connection.request("POST", "/predict", jpeg, {"Content-Type": "image/jpeg"})
    response = connection.getresponse()
    answer: dict[str, Any] = json.loads(response.read())
    assert response.status == 200, answer
    return answer


@pytest.fixture
def connection(autodep_server: LiveServer) -> Iterator[http.client.HTTPConnection]:
    connection = connect(autodep_server)
    yield connection
    connection.close()


def test_one_request(benchmark: Any, connection: http.client.HTTPConnection, jpeg: bytes) -> None:
    predict(connection, jpeg)  # untimed: the first answer may still pay for a warm-up
    answer = benchmark(predict, connection, jpeg)
    assert answer["predictions"]


def test_v2_batch(benchmark: Any, autodep_server: LiveServer, jpeg: bytes) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=autodep_server.url.removeprefix("http://"))
    connection = connect(autodep_server)
    connection.request("GET", "/status")
    (model,) = json.loads(connection.getresponse().read())["models"]  # the one served
    connection.close()
    images = triton.InferInput("input", [BATCH], "BYTES")
    images.set_data_from_numpy(np.array([jpeg] * BATCH, dtype=np.object_), binary_data=True)
    wanted = [triton.InferRequestedOutput("probabilities", binary_data=True)]

    def infer() -> np.ndarray:
        probabilities: np.ndarray = client.infer(model, [images], outputs=wanted).as_numpy(
            "probabilities"
        )
        return probabilities

    infer()  # untimed: the workers' first batch of this size
    benchmark.extra_info["images"] = BATCH
    assert benchmark(infer).shape[0] == BATCH
    client.close()


def test_concurrent_requests(benchmark: Any, autodep_server: LiveServer, jpeg: bytes) -> None:
    connections = [connect(autodep_server) for _ in range(BATCH)]
    with ThreadPoolExecutor(BATCH) as clients:

        def burst() -> list[dict[str, Any]]:
            return list(clients.map(predict, connections, [jpeg] * BATCH))

        burst()  # untimed: opens the connections
        benchmark.extra_info["images"] = BATCH
        answers = benchmark(burst)
    for c in connections:
        c.close()
    assert len(answers) == BATCH and all(a["predictions"] for a in answers)
