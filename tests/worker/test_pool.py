"""The pool's lifecycle: scaling up, idling down, crashes, overload, timeouts."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal

import pytest

from autodep import Autodep
from autodep.errors import WorkerStartError
from autodep.pool.handle import WorkerState
from tests.support.images import RGB, image_bytes
from tests.support.waiting import wait_for


async def workers(server, model):
    _, body = await server.get("/status")
    return body["models"][model]["workers"]


async def test_scales_up_under_load_then_stops_idle_workers(serve, gated):
    model, gate = gated
    server = await serve(
        model, min_workers=1, max_workers=2, max_batch_size=1, idle_timeout=1.0, tick=0.2
    )
    assert len(await workers(server, "gated")) == 1
    # The gate holds the first request in the model, so the others stay queued:
    # load that lasts until the test ends it.
    burst = asyncio.gather(*(server.predict(image_bytes("red")) for _ in range(6)))
    await gate.wait_entered(2)  # a second worker started and took a request too
    started = await workers(server, "gated")
    assert len(started) == 2  # never above max_workers
    assert all(w["state"] == "busy" and w["startup_s"] > 0 and w["rss_bytes"] > 0 for w in started)
    gate.open()
    assert all(status == 200 for status, _, _ in await burst)

    async def back_to_minimum():
        return len(await workers(server, "gated")) == 1

    await wait_for(back_to_minimum)


async def test_a_killed_worker_is_replaced_and_its_request_retried(serve, gated):
    model, gate = gated
    server = await serve(model, min_workers=1, max_workers=1)
    request = asyncio.ensure_future(server.predict(image_bytes("blue")))
    await gate.wait_entered(1)  # the request is inside the only worker's model
    [victim] = await workers(server, "gated")
    assert victim["state"] == "busy"
    os.kill(victim["pid"], signal.SIGKILL)
    gate.open()
    status, body, _ = await request
    assert status == 200
    assert body["predictions"][0]["label"] == "blue"
    assert gate.entered == 2  # it ran again, in the replacement
    _, state = await server.get("/status")
    model_status = state["models"]["gated"]
    assert model_status["restarts"] == 1
    assert [w["pid"] for w in model_status["workers"]] != [victim["pid"]]


KILLS = 5  # deaths under load, at least
MAX_KILLS = 15  # ... until one of them has hit a running batch


async def test_workers_killed_under_load_lose_no_request(serve, slow_model, caplog):
    caplog.set_level(logging.INFO, logger="autodep")
    server = await serve(slow_model, min_workers=2, max_workers=2, max_batch_size=4)
    pool = server.service.models["slow"].pool
    images = {color: image_bytes(color) for color in RGB}
    answers: list[tuple[int, bool]] = []
    done = asyncio.Event()

    async def client(color: str) -> None:  # closed loop: the next request when one is answered
        while not done.is_set():
            status, body, _ = await server.predict(images[color])
            answers.append((status, status == 200 and body["predictions"][0]["label"] == color))

    clients = [asyncio.ensure_future(client(color)) for color in [*RGB, *RGB, "red", "blue"]]
    killed: list[int] = []

    async def recovered():
        """Each death replaced and seen, no retried request pending, traffic flowing."""
        ready = [w for w in pool.workers if w.state.value in ("idle", "busy")]
        settled = len(pool.workers) == 2 and len(ready) == 2 and pool.retrying == 0
        if settled and pool.restarts == len(killed) and len(answers) >= mark + 8:
            return ready
        return None

    while len(killed) < KILLS or (pool.retried == 0 and len(killed) < MAX_KILLS):
        mark = len(answers)
        ready = await wait_for(recovered, timeout=30)
        victim = max(ready, key=lambda w: w.state.value == "busy")  # a busy one if there is
        os.kill(victim.pid, signal.SIGKILL)
        killed.append(victim.pid)
    mark = len(answers)
    await wait_for(recovered, timeout=30)
    done.set()
    await asyncio.gather(*clients)

    assert pool.retried > 0, "no kill hit a running batch"
    assert [status for status, _ in answers if status != 200] == []
    assert all(right for _, right in answers)
    assert pool.restarts == len(killed)
    assert sorted(w.state.value for w in pool.workers) == ["idle", "idle"]
    assert not {w.pid for w in pool.workers} & set(killed)
    # Exactly one replacement per death: two workers at start, one more per kill.
    assert pool.started == 2 + len(killed)
    assert "scaling down" not in caplog.text


async def test_a_request_that_kills_its_worker_twice_fails_alone(serve, gated, caplog):
    model, gate = gated
    server = await serve(model, min_workers=1, max_workers=1, max_batch_size=4)
    poison = asyncio.ensure_future(server.predict(image_bytes("blue")))
    await gate.wait_entered(1)
    others = [asyncio.ensure_future(server.predict(image_bytes("red"))) for _ in range(2)]

    async def queued():
        return (await server.get("/status"))[1]["models"]["gated"]["queue_depth"] == 2

    await wait_for(queued)
    for deaths in (1, 2):  # each time the poison is inside a worker, that worker dies
        [worker] = await workers(server, "gated")
        os.kill(worker["pid"], signal.SIGKILL)
        if deaths == 1:
            await gate.wait_entered(2)  # it came back first, and alone, in the replacement
            assert (await server.get("/status"))[1]["models"]["gated"]["queue_depth"] == 2
    status, body, _ = await poison
    # A 500 names a request id; what happened is in the server's log under that id.
    request_id = re.fullmatch(
        r"internal error \(request id (\w+)\); see the server log", body["error"]
    )
    assert status == 500 and request_id, body
    assert f"(request id {request_id.group(1)}): model 'gated': worker process died" in caplog.text
    gate.open()
    assert [(s, b["predictions"][0]["label"]) for s, b, _ in await asyncio.gather(*others)] == [
        (200, "red"),
        (200, "red"),
    ]
    assert server.service.models["gated"].pool.restarts == 2


async def test_a_model_that_fails_to_load_is_reported(broken_model):
    with pytest.raises(WorkerStartError, match="broken"):
        async with Autodep(broken_model):
            pass


async def test_a_full_queue_answers_503_with_retry_after(serve, slow_model):
    server = await serve(slow_model, max_workers=1, max_batch_size=1, max_queue=2)
    results = await asyncio.gather(*(server.predict(image_bytes("green")) for _ in range(8)))
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) >= 3  # one running, two queued
    refused = [(body, headers) for status, body, headers in results if status == 503]
    assert refused, statuses
    body, headers = refused[0]
    assert "max_queue=2" in body["error"]
    assert headers["Retry-After"] == "1"
    assert all(s in (200, 503) for s in statuses)


async def test_a_slow_request_times_out_with_504(serve, gated):
    model, _ = gated  # the gate opens after the test: no answer can come before the timeout
    server = await serve(model, max_workers=1, request_timeout=0.2)
    status, body, _ = await server.predict(image_bytes("green"))
    assert status == 504
    assert "did not answer" in body["error"]


async def test_shutdown_finishes_queued_work_and_refuses_new(serve, gated):
    model, gate = gated
    server = await serve(model, max_workers=1, max_batch_size=1)
    running = [asyncio.ensure_future(server.predict(image_bytes("red")))]
    await gate.wait_entered(1)
    running += [asyncio.ensure_future(server.predict(image_bytes("red"))) for _ in range(2)]

    async def queued():  # they stay queued: the gate holds the one running
        _, body = await server.get("/status")
        return body["models"]["gated"]["queue_depth"] == 2

    await wait_for(queued)
    shutdown = asyncio.ensure_future(server.service.shutdown())
    status, _, headers = await server.predict(image_bytes("red"))
    assert status == 503 and "Retry-After" in headers
    gate.open()
    assert [r[0] for r in await asyncio.gather(*running)] == [200, 200, 200]
    await shutdown
    ready, _ = await server.get("/v2/health/ready")
    assert ready == 503


async def test_health_routes(serve, color_model):
    server = await serve(color_model)
    assert await server.get("/v2/health/live") == (200, {"live": True})
    assert await server.get("/v2/health/ready") == (200, {"ready": True})


async def test_settled_returns_once_the_desired_workers_are_ready(serve, color_model):
    server = await serve(color_model, min_workers=1, max_workers=2, idle_timeout=60)
    pool = server.service.model("colors").pool
    pool.set_desired(2, "test")
    await asyncio.wait_for(pool.settled(), timeout=60)
    assert pool.count(WorkerState.IDLE, WorkerState.BUSY) == 2
