"""GET /metrics in Prometheus format, moving as requests are served."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import image_bytes


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


async def test_counts_move_with_requests(serve, slow_model):
    server = await serve(slow_model, max_workers=1, max_batch_size=8)
    before = await scrape(server)
    assert before[("autodep_workers", (("model", "slow"), ("state", "idle")))] == 1
    assert before[("autodep_queue_depth", (("model", "slow"),))] == 0

    results = await asyncio.gather(*(server.predict(image_bytes("red")) for _ in range(6)))
    assert all(status == 200 for status, _, _ in results)
    await server.predict(b"junk")  # a 400, found by the worker that decodes it

    after = await scrape(server)
    ok = ("autodep_requests_total", (("code", "200"), ("model", "slow")))
    bad = ("autodep_requests_total", (("code", "400"), ("model", "slow")))
    assert after[ok] - before.get(ok, 0) == 6
    assert after[bad] - before.get(bad, 0) == 1
    model = (("model", "slow"),)
    assert after[("autodep_request_duration_seconds_count", model)] == 7
    assert after[("autodep_queue_wait_seconds_count", model)] == 7
    batches = after[("autodep_batch_size_count", model)]
    assert after[("autodep_compute_seconds_count", model)] == batches
    assert after[("autodep_decode_seconds_count", model)] == batches
    assert after[("autodep_batch_size_sum", model)] == 7
    assert batches < 6  # requests that queued behind a busy worker were batched
    assert after[("autodep_worker_restarts_total", model)] == 0
    assert after[("autodep_worker_startup_seconds_count", model)] == 1
