"""Loads are counted against --max-total-workers, and none is accepted once shutdown began.

Before: with `--max-total-workers 1`, a load asking `workers: {min: 3}` and one with
three versions ran their workers all the same; a load sent during shutdown, or whose
warm-up spanned it, answered 200 READY for a pool that shutdown never drained.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests import models
from tests.support.images import image_bytes
from tests.support.leaks import worker_pids


@pytest.fixture(autouse=True)
def in_model_dir(model_dir, monkeypatch):
    """Loads name files inside the server's working directory."""
    monkeypatch.chdir(model_dir)


async def load(server, name: str, entry: dict[str, object]) -> tuple[int, dict]:
    body = {"parameters": {"config": json.dumps(entry)}}
    url = f"{server.url}/v2/repository/models/{name}/load"
    async with server.session.post(url, json=body) as response:
        return response.status, await response.json()


async def test_a_load_that_does_not_fit_the_worker_budget_is_refused(serve, color_model):
    server = await serve(
        color_model, max_workers=3, max_total_workers=1, model_control_mode="explicit"
    )
    wide = {"path": "colors.pt", "labels": "colors.labels.txt", "workers": {"min": 3}}
    status, answer = await load(server, "wide", wide)
    assert status == 409, answer
    assert "--max-total-workers 1" in answer["error"]
    three = {
        "versions": {"1": "colors.pt", "2": "colors.pt", "3": "colors.pt"},
        "version_policy": {"latest": 3},
        "labels": "colors.labels.txt",
    }
    status, answer = await load(server, "three", three)
    assert status == 409, answer
    assert len(worker_pids()) == 1  # only the served model's worker ever started
    _, index = await server.get("/status")
    assert {v["name"] for v in index["repository"]["versions"]} == {"colors"}
    status, body, _ = await server.predict(image_bytes("red"))
    assert status == 200 and body["predictions"][0]["label"] == "red"


async def test_a_load_during_shutdown_is_refused(serve, gated, color_model):
    model_path, gate = gated
    server = await serve(
        model_path, max_workers=1, max_total_workers=3, model_control_mode="explicit"
    )
    held = asyncio.ensure_future(server.predict(image_bytes("red")))
    await gate.wait_entered(1)  # shutdown waits for this request: it is under way meanwhile
    shutdown = asyncio.ensure_future(server.service.shutdown())
    status, answer = await load(
        server, "late", {"path": "colors.pt", "labels": "colors.labels.txt"}
    )
    assert status == 503, answer
    assert "shutting down" in answer["error"]
    gate.open()
    assert (await held)[0] == 200
    await shutdown
    assert worker_pids() == set()


async def test_a_load_whose_warm_up_spans_shutdown_ends_failed(serve, color_model, tmp_path):
    gate = models.Gate(tmp_path / "gate")
    server = await serve(color_model, max_workers=1, model_control_mode="explicit")
    slow = models.save(models.GatedWarmUp(str(gate.path)), color_model.with_name("slow.pt"))
    loading = asyncio.ensure_future(load(server, "slow", {"path": slow.name}))
    try:
        await gate.wait_entered(1)  # the new version's warm-up is inside the model
        shutdown = asyncio.ensure_future(server.service.shutdown(grace_period=5))
        ready, _ = await server.get("/v2/health/ready")
        assert ready == 503  # shutdown began
    finally:
        gate.open()
    status, answer = await loading
    assert status == 503, answer
    await shutdown
    assert worker_pids() == set()
