"""GET /metrics in Prometheus format, moving as requests are served."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from tests.support.images import image_bytes
from tests.support.waiting import wait_for


async def scrape(server) -> dict[tuple[str, tuple], float]:
    async with server.session.get(server.url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_counts_move_with_requests(serve, gated):
    model_path, gate = gated
    server = await serve(model_path, max_workers=1, max_batch_size=8)
    before = await scrape(server)
    assert before[("autodep_workers", (("model", "gated"), ("state", "idle")))] == 1
    assert before[("autodep_queue_depth", (("model", "gated"),))] == 0

    # One request inside the model holds the worker; five more queue behind it.
    first = asyncio.ensure_future(server.predict(image_bytes("red")))
    await gate.wait_entered(1)
    rest = [asyncio.ensure_future(server.predict(image_bytes("red"))) for _ in range(5)]

    async def queued():
        return (await scrape(server))[("autodep_queue_depth", (("model", "gated"),))] == 5

    await wait_for(queued)
    gate.open()
    results = await asyncio.gather(first, *rest)
    assert all(status == 200 for status, _, _ in results)
    await server.predict(b"junk")  # a 400, found by the worker that decodes it

    after = await scrape(server)
    ok = ("autodep_requests_total", (("code", "200"), ("model", "gated")))
    bad = ("autodep_requests_total", (("code", "400"), ("model", "gated")))
    assert after[ok] - before.get(ok, 0) == 6
    assert after[bad] - before.get(bad, 0) == 1
    model = (("model", "gated"),)
    assert after[("autodep_request_duration_seconds_count", model)] == 7
    assert after[("autodep_queue_wait_seconds_count", model)] == 7
    batches = after[("autodep_batch_size_count", model)]
    assert after[("autodep_compute_seconds_count", model)] == batches
    assert after[("autodep_decode_seconds_count", model)] == batches
    assert after[("autodep_batch_size_sum", model)] == 7
    assert batches == 3  # the first, the five that queued behind it as one batch, the junk
    assert after[("autodep_worker_restarts_total", model)] == 0
    assert after[("autodep_worker_startup_seconds_count", model)] == 1
