"""The autoscaler on real traffic through a real server, with schedules compressed to seconds."""

from __future__ import annotations

import asyncio

from tests.support.images import image_bytes
from tests.support.waiting import wait_for


async def model_status(server, name):
    _, body = await server.get("/status")
    return body["models"][name]


async def test_scales_to_zero_when_idle_and_back_on_demand(serve, color_model):
    server = await serve(color_model, min_workers=0, max_workers=2, idle_timeout=1.0, tick=0.2)
    status = await model_status(server, "colors")
    assert (status["workers"], status["desired_workers"]) == ([], 0)

    code, body, _ = await server.predict(image_bytes("blue"))  # waits for a cold start
    assert code == 200 and body["predictions"][0]["label"] == "blue"
    status = await model_status(server, "colors")
    assert status["desired_workers"] >= 1
    assert "cold start" in status["scaling"][-1]["reason"]

    async def at_zero():
        status = await model_status(server, "colors")
        return status if not status["workers"] and status["desired_workers"] == 0 else None

    status = await wait_for(at_zero)
    assert status["scaling"][0]["to"] == 0
    assert "needed over the last 1 s" in status["scaling"][0]["reason"]
    code, body, _ = await server.predict(image_bytes("red"))  # and back up again
    assert code == 200 and body["predictions"][0]["label"] == "red"


async def test_a_burst_adds_a_worker_within_a_few_ticks(serve, gated):
    model, gate = gated
    server = await serve(
        model, min_workers=1, max_workers=2, max_batch_size=1, tick=0.2, idle_timeout=30
    )
    # The gate holds the first request in the model: the rest stay queued until it opens.
    burst = asyncio.gather(*(server.predict(image_bytes("green")) for _ in range(12)))

    async def scaled_up():
        return (await model_status(server, "gated"))["desired_workers"] == 2

    await wait_for(scaled_up, timeout=10)
    await gate.wait_entered(2)  # the second worker took a request too
    gate.open()
    assert all(code == 200 for code, _, _ in await burst)
    status = await model_status(server, "gated")
    assert len([w for w in status["workers"] if w["served"]]) == 2
    assert "traffic needs" in status["scaling"][0]["reason"]
    async with server.session.get(server.url + "/metrics") as response:
        text = await response.text()
    assert 'autodep_desired_workers{model="gated"} 2.0' in text
    assert 'autodep_scaling_events_total{direction="up",model="gated"} 1.0' in text


async def test_a_busy_model_takes_the_budget_an_idle_one_does_not_use(serve, gated, color_model):
    model, gate = gated
    server = await serve(
        model,
        color_model,
        min_workers=0,
        max_workers=2,
        max_total_workers=2,
        max_batch_size=1,
        tick=0.2,
        idle_timeout=30,
    )
    burst = asyncio.gather(
        *(server.predict(image_bytes("red"), "/predict/gated") for _ in range(12))
    )

    async def busy_has_two():
        return (await model_status(server, "gated"))["desired_workers"] == 2

    await wait_for(busy_has_two, timeout=10)
    assert (await model_status(server, "colors"))["desired_workers"] == 0
    code, _, _ = await server.predict(image_bytes("red"), "/predict/colors")
    assert code == 200  # a model with traffic always gets a worker, budget or not
    gate.open()
    assert all(code == 200 for code, _, _ in await burst)
