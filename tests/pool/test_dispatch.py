"""Dispatch and batching: each request its own answer, batches as the settings say."""

from __future__ import annotations

import asyncio

import numpy as np

from tests.pool.fakes import request


def answer_of(inferred) -> float:
    return float(inferred.outputs[0][0])


async def test_each_request_gets_its_own_answer(make_pool):
    pool = await make_pool(max_workers=2, min_workers=2)
    answers = await asyncio.gather(*(pool.infer(request(v)) for v in range(10)))
    assert [answer_of(a) for a in answers] == [2.0 * v for v in range(10)]


async def test_requests_waiting_behind_a_busy_worker_go_as_batches_of_at_most_max_batch_size(
    make_pool, launcher
):
    pool = await make_pool(max_batch_size=3)
    launcher.hold = True
    first = asyncio.ensure_future(pool.infer(request(0)))
    worker, batch = await launcher.next_batch()
    assert batch == [0.0]  # alone: a lone request never waits for company
    rest = [asyncio.ensure_future(pool.infer(request(v))) for v in (1, 2, 3, 4)]
    await asyncio.sleep(0)  # let them queue
    assert (pool.held, pool.queue_depth) == (3, 4)  # a full batch waits in the busy worker
    worker.answer()
    assert (await launcher.next_batch())[1] == [1.0, 2.0, 3.0]
    worker.answer()
    assert (await launcher.next_batch())[1] == [4.0]
    worker.answer()
    answers = await asyncio.gather(first, *rest)
    assert [answer_of(a) for a in answers] == [0.0, 2.0, 4.0, 6.0, 8.0]


async def test_under_load_a_partial_batch_waits_up_to_max_queue_delay_for_company(
    make_pool, launcher
):
    delay = 0.2
    pool = await make_pool(min_workers=2, max_workers=2, max_queue_delay=delay)
    launcher.hold = True
    busy = asyncio.ensure_future(pool.infer(request(0)))
    first_worker, _ = await launcher.next_batch()  # one worker busy: the pool is under load
    loop = asyncio.get_running_loop()
    queued_at = loop.time()
    later = asyncio.ensure_future(pool.infer(request(1)))
    await asyncio.sleep(0)
    assert launcher.pending_batches == 0  # the idle worker waits for company
    company = asyncio.ensure_future(pool.infer(request(2)))
    second_worker, batch = await launcher.next_batch()
    assert batch == [1.0, 2.0]  # the two went together
    assert loop.time() - queued_at >= delay * 0.95  # the timer, not the second arrival
    first_worker.answer()
    second_worker.answer()
    assert [answer_of(a) for a in await asyncio.gather(busy, later, company)] == [0, 2, 4]


async def test_a_lone_request_on_an_idle_pool_does_not_wait_for_the_queue_delay(make_pool):
    pool = await make_pool(max_queue_delay=30.0)
    async with asyncio.timeout(5):  # far below the delay
        assert answer_of(await pool.infer(request(5))) == 10.0


async def test_a_request_that_fails_to_decode_fails_alone_and_its_batch_is_answered(
    make_pool, launcher
):
    pool = await make_pool()
    launcher.hold = True
    first = asyncio.ensure_future(pool.infer(request(0)))
    worker, _ = await launcher.next_batch()
    batch = [asyncio.ensure_future(pool.infer(request(v))) for v in (1, -1, 3)]
    await asyncio.sleep(0)
    worker.answer()
    assert (await launcher.next_batch())[1] == [1.0, -1.0, 3.0]
    worker.answer()
    results = await asyncio.gather(first, *batch, return_exceptions=True)
    assert answer_of(results[1]) == 2.0 and answer_of(results[3]) == 6.0
    assert getattr(results[2], "status", None) == 400 and "negative" in str(results[2])


async def test_the_most_recently_used_idle_worker_takes_the_next_request(make_pool, launcher):
    """So that the others stay idle long enough to be scaled down."""
    pool = await make_pool(min_workers=2, max_workers=2)
    await pool.infer(request(1))
    await pool.infer(request(2))
    await pool.infer(request(3))
    used = [w for w in launcher.workers if w.batches]
    assert len(used) == 1 and used[0].batches == [[1.0], [2.0], [3.0]]


async def test_a_busy_worker_is_sent_its_next_full_batch_before_its_current_one_is_done(
    make_pool, launcher
):
    pool = await make_pool(max_batch_size=2)
    launcher.hold = True
    first = asyncio.ensure_future(pool.infer(request(0)))
    worker, _ = await launcher.next_batch()
    one = asyncio.ensure_future(pool.infer(request(1)))
    await asyncio.sleep(0)
    assert (pool.held, launcher.pending_batches) == (0, 0)  # not a full batch: it fills
    two = asyncio.ensure_future(pool.infer(request(2)))
    # A full batch: the worker has it while [0] still runs, and starts it on its own.
    assert await launcher.next_batch() == (worker, [1.0, 2.0])
    assert (pool.held, pool.queue_depth) == (2, 2)
    worker.answer()
    worker.answer()
    assert [answer_of(a) for a in await asyncio.gather(first, one, two)] == [0, 2, 4]
    assert pool.held == 0


async def test_a_batch_copied_off_the_loop_still_reaches_the_worker_before_the_next(
    make_pool, launcher
):
    pool = await make_pool(max_batch_size=1)
    launcher.hold = True
    large = [np.full(300_000, 1.0, np.float32)]  # over 1 MiB: copied in a thread
    first = asyncio.ensure_future(pool.infer(large))
    second = asyncio.ensure_future(pool.infer(request(2)))  # the busy worker's next batch
    worker, batch = await launcher.next_batch()
    assert batch == [1.0]
    assert (await launcher.next_batch())[1] == [2.0]
    worker.answer()
    worker.answer()
    assert [answer_of(a) for a in await asyncio.gather(first, second)] == [2.0, 4.0]


async def test_of_the_busy_workers_the_one_holding_the_fewest_batches_takes_the_next(
    make_pool, launcher
):
    pool = await make_pool(min_workers=2, max_workers=2, max_batch_size=1)
    launcher.hold = True
    answers = [asyncio.ensure_future(pool.infer(request(0)))]
    first, _ = await launcher.next_batch()
    answers.append(asyncio.ensure_future(pool.infer(request(1))))
    second, _ = await launcher.next_batch()
    answers += [asyncio.ensure_future(pool.infer(request(v))) for v in (2, 3, 4)]
    for _ in range(3):
        await launcher.next_batch()
    # Each held one in turn, the one whose batch began first before the other.
    assert (first.batches, second.batches) == ([[0.0], [2.0], [4.0]], [[1.0], [3.0]])
    for _ in range(3):
        first.answer()
    for _ in range(2):
        second.answer()
    assert [answer_of(a) for a in await asyncio.gather(*answers)] == [0, 2, 4, 6, 8]
