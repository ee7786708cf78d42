"""Admission: a full queue or a closing pool refuses at once; an abandoned request is dropped."""

from __future__ import annotations

import asyncio

import pytest

from autodep.errors import QueueFull, RequestTimeout, ShuttingDown
from tests.pool.fakes import request, until


async def test_a_full_queue_refuses_the_next_request_at_once_then_admits_again(make_pool, launcher):
    pool = await make_pool(max_queue=2, max_batch_size=1)
    launcher.hold = True
    running = asyncio.ensure_future(pool.infer(request(0)))
    worker, _ = await launcher.next_batch()
    queued = [asyncio.ensure_future(pool.infer(request(v))) for v in (1, 2)]
    await until(lambda: pool.queue_depth == 2)  # queued, or held by the busy worker as its next
    with pytest.raises(QueueFull, match=r"2 requests waiting.*max_queue=2"):
        pool.admit()  # what a front end asks before reading a body
    with pytest.raises(QueueFull):
        await pool.infer(request(3))
    worker.answer()
    await until(lambda: pool.queue_depth == 1)  # 0 done, 1 runs: there is room again
    pool.admit()
    worker.answer()
    worker.answer()
    assert [float(a.outputs[0][0]) for a in await asyncio.gather(running, *queued)] == [0, 2, 4]
    assert [b for w in launcher.workers for b in w.batches] == [[0.0], [1.0], [2.0]]


async def test_a_request_that_timed_out_in_the_queue_is_never_run(make_pool, launcher):
    pool = await make_pool(request_timeout=0.05)
    launcher.hold = True
    running = asyncio.ensure_future(pool.infer(request(0)))
    worker, _ = await launcher.next_batch()
    with pytest.raises(RequestTimeout, match=r"did not answer within 0\.05 s"):
        await pool.infer(request(1))
    launcher.hold = False
    worker.answer()
    with pytest.raises(RequestTimeout):  # the first also waited too long
        await running
    assert float((await pool.infer(request(2))).outputs[0][0]) == 4.0
    assert worker.batches == [[0.0], [2.0]]  # 1 was dropped from the queue, not run
    assert pool.queue_depth == 0


async def test_a_draining_pool_refuses_new_requests(make_pool):
    pool = await make_pool()
    await pool.drain(timeout=1)
    with pytest.raises(ShuttingDown):
        await pool.infer(request(1))
    assert not pool.ready


async def test_a_full_queue_overflows_only_with_every_worker_the_pool_may_have_serving(
    make_pool, launcher
):
    pool = await make_pool(max_queue=1, max_batch_size=1, min_workers=1, max_workers=2)
    launcher.hold = True
    running = asyncio.ensure_future(pool.infer(request(0)))
    worker, _ = await launcher.next_batch()
    queued = asyncio.ensure_future(pool.infer(request(1)))
    await launcher.next_batch()  # held by the busy worker: the queue is full
    with pytest.raises(QueueFull):
        pool.admit()
    assert pool.overflowed == 0  # a second worker may still come
    pool.set_desired(2, "test")
    await pool.settled()
    with pytest.raises(QueueFull):
        pool.admit()
    assert pool.overflowed == 1  # both serve, and still the queue is full
    worker.answer()
    worker.answer()
    assert [float(a.outputs[0][0]) for a in await asyncio.gather(running, queued)] == [0, 2]
