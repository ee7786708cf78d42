"""A worker's death: its batch goes back to the head of the queue; a poison request fails alone."""

from __future__ import annotations

import asyncio

from autodep.errors import WorkerError
from autodep.pool.pool import MAX_ATTEMPTS
from tests.pool.fakes import POISON, request


def answers(results) -> list[float]:
    return [float(r.outputs[0][0]) for r in results]


async def test_a_dead_workers_batch_runs_again_first_each_request_alone(make_pool, launcher):
    pool = await make_pool(max_batch_size=4)
    launcher.hold = True
    first = asyncio.ensure_future(pool.infer(request(0)))
    worker, _ = await launcher.next_batch()
    batch = [asyncio.ensure_future(pool.infer(request(v))) for v in (1, 2, 3)]
    await asyncio.sleep(0)
    worker.answer()
    assert (await launcher.next_batch())[1] == [1.0, 2.0, 3.0]
    later = asyncio.ensure_future(pool.infer(request(4)))  # queued behind the running batch
    await asyncio.sleep(0)
    launcher.hold = False
    worker.crash()
    results = await asyncio.gather(first, *batch, later)
    assert answers(results) == [0, 2, 4, 6, 8]
    assert len(launcher.workers) == 2  # exactly one replacement
    replacement = launcher.workers[1]
    # The lost batch first, in its order, each request alone (any of them may be the
    # culprit), then what was queued behind it.
    assert replacement.batches == [[1.0], [2.0], [3.0], [4.0]]
    assert (pool.restarts, pool.retried) == (1, 3)


async def test_a_request_that_kills_the_workers_running_it_alone_fails_and_others_are_answered(
    make_pool, launcher
):
    pool = await make_pool(max_batch_size=4)
    launcher.hold = True
    first = asyncio.ensure_future(pool.infer(request(0)))
    worker, _ = await launcher.next_batch()
    batch = [asyncio.ensure_future(pool.infer(request(v))) for v in (1, POISON, 3)]
    await asyncio.sleep(0)
    launcher.hold = False
    worker.answer()  # the next batch holds the poison: its worker dies
    results = await asyncio.gather(first, *batch, return_exceptions=True)
    assert answers([results[0], results[1], results[3]]) == [0, 2, 6]
    assert isinstance(results[2], WorkerError) and "died" in str(results[2])
    # Died in the batch, then MAX_ATTEMPTS times alone; the other two were answered alone.
    ran_poison = [b for w in launcher.workers for b in w.batches if POISON in b]
    assert ran_poison == [[1.0, POISON, 3.0]] + [[POISON]] * MAX_ATTEMPTS
    assert len(launcher.workers) == 1 + 1 + MAX_ATTEMPTS  # one replacement per death
    assert pool.restarts == 1 + MAX_ATTEMPTS
    assert answers([await pool.infer(request(5))]) == [10]  # and the pool serves on


async def test_a_worker_asked_to_stop_leaves_no_mark_on_its_batch(make_pool, launcher):
    """Only a crash makes a request suspect: after a stop, its batch runs again as a batch."""
    pool = await make_pool(max_batch_size=4)
    launcher.hold = True
    running = asyncio.ensure_future(pool.infer(request(7)))
    await launcher.next_batch()
    queued = asyncio.ensure_future(pool.infer(request(8)))
    await asyncio.sleep(0)
    launcher.hold = False
    await pool.workers[0].stop()  # e.g. a scale-down that raced the batch
    assert answers(await asyncio.gather(running, queued)) == [14, 16]
    assert launcher.workers[1].batches == [[7.0, 8.0]]  # together: neither is suspect
    assert pool.restarts == 0


async def test_a_dead_workers_next_batch_runs_again_whole_after_the_one_it_was_running(
    make_pool, launcher
):
    pool = await make_pool(max_batch_size=2)
    launcher.hold = True
    running = asyncio.ensure_future(pool.infer(request(0)))
    worker, _ = await launcher.next_batch()
    behind = [asyncio.ensure_future(pool.infer(request(v))) for v in (1, 2)]
    assert (await launcher.next_batch())[1] == [1.0, 2.0]  # held by the busy worker
    launcher.hold = False
    worker.crash()
    assert answers(await asyncio.gather(running, *behind)) == [0, 2, 4]
    # The running batch's request alone first; the held batch never ran: it stays whole.
    assert launcher.workers[1].batches == [[0.0], [1.0, 2.0]]
    assert (pool.restarts, pool.held) == (1, 0)
