"""One client's bad input fails alone: the rest of its batch is answered, details stay private."""

from __future__ import annotations

import asyncio

import pytest

from autodep.config import ModelConfig
from tests import models
from tests.support.servers import queue_depth
from tests.support.waiting import wait_for


def v2_request(values: list[float]) -> dict[str, object]:
    tensor = {"name": "input", "shape": [1, len(values)], "datatype": "FP32", "data": values}
    return {"inputs": [tensor]}


async def infer(server, values: list[float]) -> tuple[int, dict[str, object]]:
    async with server.session.post(
        server.url + "/v2/models/linear/infer", json=v2_request(values)
    ) as response:
        return response.status, await response.json()


@pytest.fixture
def linear(tmp_path) -> tuple[ModelConfig, models.Gate]:
    """A tensor model without `input_shape` that only takes 3 features, and its gate."""
    gate = models.Gate(tmp_path / "gate")
    path = models.save(models.GatedLinear(str(gate.path)), tmp_path / "linear.pt", labels=None)
    return ModelConfig(name="linear", path=path, input="tensor", output="raw"), gate


async def test_a_wrongly_shaped_item_fails_alone_and_its_batch_is_answered(serve, linear):
    config, gate = linear
    server = await serve(config, max_workers=1, max_batch_size=8)
    try:
        first = asyncio.ensure_future(infer(server, [1.0, 1.0, 1.0]))
        await gate.wait_entered(1)  # the only worker is held: the next ones queue up together
        victims = [asyncio.ensure_future(infer(server, [n, 0.0, 1.0])) for n in (1.0, 2.0, 3.0)]
        bad = asyncio.ensure_future(infer(server, [1.0, 2.0, 3.0, 4.0, 5.0]))

        async def all_queued() -> bool:
            return await queue_depth(server, "linear") == 4

        await wait_for(all_queued)
    finally:
        gate.open()
    assert (await first)[0] == 200
    answers = await asyncio.gather(*victims)
    assert [status for status, _ in answers] == [200, 200, 200], answers
    assert [body["outputs"][0]["data"] for _, body in answers] == [
        [2.0, 0.0, 2.0],
        [4.0, 0.0, 2.0],
        [6.0, 0.0, 2.0],
    ]
    status, body = await bad
    assert status == 400, body
    error = str(body["error"])
    assert "the model could not run on this input" in error and "shape" in error
    # The model's TorchScript source and its author's paths are not the client's to read.
    assert "models.py" not in error and "Traceback" not in error and "forward" not in error
    async with server.session.get(server.url + "/metrics") as response:
        metrics = await response.text()
    # The five went into the model in two calls: the bad one did not split the batch.
    assert 'autodep_batch_size_count{model="linear"} 2.0' in metrics
