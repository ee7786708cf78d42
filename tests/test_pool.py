"""The pool's lifecycle: scaling up, idling down, crashes, overload, timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import pytest

from autodep import Autodep
from autodep.errors import WorkerStartError
from tests.conftest import image_bytes


async def wait_for(predicate, timeout=20.0):
    """Poll a condition until it holds, failing after a deadline."""
    deadline = time.monotonic() + timeout
    while not (result := await predicate()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.05)
    return result


async def workers(server, model):
    _, body = await server.get("/status")
    return body["models"][model]["workers"]


async def test_scales_up_under_load_then_stops_idle_workers(serve, slow_model):
    server = await serve(
        slow_model, min_workers=1, max_workers=2, max_batch_size=1, idle_timeout=1.0
    )
    assert len(await workers(server, "slow")) == 1
    seen: dict[int, dict] = {}

    async def watch():
        while True:
            live = [w for w in await workers(server, "slow") if w["state"] != "stopping"]
            assert len(live) <= 2  # never above max_workers
            seen.update({w["pid"]: w for w in live if w["pid"]})
            await asyncio.sleep(0.02)  # pacing the probe

    async def load_until_a_second_worker() -> None:
        # A fixed number of requests can all be served before the autoscaler's next tick.
        while len(seen) < 2:
            results = await asyncio.gather(*(server.predict(image_bytes("red")) for _ in range(6)))
            assert all(status == 200 for status, _, _ in results)

    watcher = asyncio.ensure_future(watch())
    await asyncio.wait_for(load_until_a_second_worker(), timeout=30)
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher  # re-raises an assertion the watcher failed
    started = [w for w in seen.values() if w["startup_s"] is not None]
    assert all(w["startup_s"] > 0 and w["rss_bytes"] > 0 for w in started)

    async def back_to_minimum():
        return len(await workers(server, "slow")) == 1

    await wait_for(back_to_minimum)


async def test_a_killed_worker_is_replaced_and_its_request_retried(serve, slow_model):
    server = await serve(slow_model, min_workers=1, max_workers=1)
    request = asyncio.ensure_future(server.predict(image_bytes("blue")))

    async def busy_worker():
        found = [w for w in await workers(server, "slow") if w["state"] == "busy"]
        return found[0] if found else None

    victim = await wait_for(busy_worker)
    os.kill(victim["pid"], signal.SIGKILL)
    status, body, _ = await request
    assert status == 200
    assert body["predictions"][0]["label"] == "blue"
    _, state = await server.get("/status")
    model = state["models"]["slow"]
    assert model["restarts"] == 1
    assert [w["pid"] for w in model["workers"]] != [victim["pid"]]


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


async def test_a_slow_request_times_out_with_504(serve, slow_model):
    server = await serve(slow_model, max_workers=1, request_timeout=0.01)
    status, body, _ = await server.predict(image_bytes("green"))
    assert status == 504
    assert "did not answer" in body["error"]


async def test_shutdown_finishes_queued_work_and_refuses_new(serve, slow_model):
    server = await serve(slow_model, max_workers=1, max_batch_size=1)
    running = [asyncio.ensure_future(server.predict(image_bytes("red"))) for _ in range(3)]

    async def queued():
        _, body = await server.get("/status")
        return body["models"]["slow"]["queue_depth"] >= 1

    await wait_for(queued)
    shutdown = asyncio.ensure_future(server.service.shutdown())
    status, _, headers = await server.predict(image_bytes("red"))
    assert status == 503 and "Retry-After" in headers
    assert [r[0] for r in await asyncio.gather(*running)] == [200, 200, 200]
    await shutdown
    ready, _ = await server.get("/v2/health/ready")
    assert ready == 503


async def test_health_routes(serve, color_model):
    server = await serve(color_model)
    assert await server.get("/v2/health/live") == (200, {"live": True})
    assert await server.get("/v2/health/ready") == (200, {"ready": True})
