"""Many requests at once: every one answered, each with its own result."""

from __future__ import annotations

import asyncio
import random

from tests.support.images import image_bytes


async def test_concurrent_predicts_with_status_calls_in_between(serve, slow_model):
    server = await serve(slow_model, max_workers=2, max_batch_size=4)
    rng = random.Random(7)
    colors = [rng.choice(["red", "green", "blue"]) for _ in range(60)]
    images = {c: image_bytes(c) for c in set(colors)}

    async def one(color):
        status, body, _ = await server.predict(images[color])
        return status, body["predictions"][0]["label"]

    async def status_calls():
        for _ in range(20):
            status, _ = await server.get("/status")
            assert status == 200
            await asyncio.sleep(0.01)  # pacing the probe, not waiting for a state

    predictions = asyncio.gather(*(one(c) for c in colors))
    _, results = await asyncio.gather(status_calls(), predictions)
    assert results == [(200, c) for c in colors]
    async with server.session.get(server.url + "/metrics") as response:
        metrics = await response.text()
    # Every request went to a worker exactly once (a retry or a duplicate would add).
    assert 'autodep_batch_size_sum{model="slow"} 60.0' in metrics


async def test_status_answers_while_a_request_is_inside_the_model(serve, gated):
    model, gate = gated
    server = await serve(model, max_workers=1)
    request = asyncio.ensure_future(server.predict(image_bytes("green")))
    await gate.wait_entered(1)
    status, body = await server.get("/status")
    assert status == 200
    assert [w["state"] for w in body["models"]["gated"]["workers"]] == ["busy"]
    gate.open()
    status, body, _ = await request
    assert (status, body["predictions"][0]["label"]) == (200, "green")


async def test_two_requests_at_once_do_not_deadlock(serve, color_model):
    server = await serve(color_model, max_workers=1, max_batch_size=1)
    first, second = await asyncio.gather(
        server.predict(image_bytes("red")), server.predict(image_bytes("blue"))
    )
    assert first[1]["predictions"][0]["label"] == "red"
    assert second[1]["predictions"][0]["label"] == "blue"
