"""Drain and close: queued and running requests finish or fail clearly; every worker stops."""

from __future__ import annotations

import asyncio

import pytest

from autodep.errors import ShuttingDown, WorkerError
from tests.pool.fakes import request


async def test_drain_lets_running_and_queued_requests_finish_and_refuses_new_ones(
    make_pool, launcher
):
    pool = await make_pool(max_batch_size=1)
    launcher.hold = True
    running = asyncio.ensure_future(pool.infer(request(1)))
    worker, _ = await launcher.next_batch()
    queued = asyncio.ensure_future(pool.infer(request(2)))
    await asyncio.sleep(0)
    draining = asyncio.ensure_future(pool.drain(timeout=5))
    await asyncio.sleep(0)
    with pytest.raises(ShuttingDown):
        await pool.infer(request(3))
    assert not draining.done()
    worker.answer()
    await launcher.next_batch()
    worker.answer()
    await draining
    assert [float(r.outputs[0][0]) for r in await asyncio.gather(running, queued)] == [2, 4]


async def test_what_is_still_queued_when_the_drain_times_out_fails_with_shutting_down(
    make_pool, launcher
):
    pool = await make_pool(max_batch_size=1)
    launcher.hold = True
    running = asyncio.ensure_future(pool.infer(request(1)))
    await launcher.next_batch()
    queued = asyncio.ensure_future(pool.infer(request(2)))
    await asyncio.sleep(0)
    await pool.drain(timeout=0.01)
    with pytest.raises(ShuttingDown, match="shut down before this request ran"):
        await queued
    await pool.close()  # the running one's worker is stopped under it
    with pytest.raises(WorkerError, match="died"):
        await running


async def test_close_stops_every_worker_and_waits_for_them(make_pool, launcher):
    pool = await make_pool(workers=3, min_workers=3, max_workers=3)
    await pool.close()
    assert pool.workers == []
    assert [w.process.exitcode for w in launcher.workers] == [0, 0, 0]  # each left when asked
