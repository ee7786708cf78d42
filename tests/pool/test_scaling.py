"""Scaling: the autoscaler's `set_desired` starts and stops workers; a cold start starts one."""

from __future__ import annotations

import asyncio

import pytest

from autodep.errors import Unavailable
from autodep.pool.handle import WorkerState
from tests.pool.fakes import request, until


async def test_set_desired_starts_workers_up_to_max_and_stops_idle_ones(make_pool, launcher):
    pool = await make_pool(min_workers=1, max_workers=3)
    pool.set_desired(5, "more traffic")  # beyond max_workers: capped
    assert pool.desired == 3
    await pool.settled()
    assert pool.count(WorkerState.IDLE) == 3 and len(launcher.workers) == 3
    pool.set_desired(0, "idle")  # below min_workers: raised to it
    assert pool.desired == 1 and pool.live == 1
    await until(lambda: len(pool.workers) == 1)
    stopped = [w for w in launcher.workers if w.process.exitcode is not None]
    assert len(stopped) == 2 and {w.process.exitcode for w in stopped} == {0}  # asked, not killed
    assert [(e.before, e.after, e.reason) for e in pool.scaling_events] == [
        (1, 3, "more traffic"),
        (3, 1, "idle"),
    ]
    assert (pool.scale_ups, pool.scale_downs) == (1, 1)


async def test_scaling_down_stops_idle_workers_never_a_busy_one(make_pool, launcher):
    pool = await make_pool(workers=2, min_workers=0, max_workers=2)
    launcher.hold = True
    running = asyncio.ensure_future(pool.infer(request(4)))
    busy, _ = await launcher.next_batch()
    pool.set_desired(0, "idle")
    assert busy.process.exitcode is None  # it keeps its batch
    assert [w.state for w in pool.workers if w.state is not WorkerState.STOPPING] == [
        WorkerState.BUSY
    ]
    busy.answer()
    assert float((await running).outputs[0][0]) == 8.0
    assert busy.batches == [[4.0]] and busy.holding == 0
    await until(lambda: not pool.workers)  # idle now, so it goes too


async def test_a_request_for_a_model_without_workers_starts_one_at_once(make_pool, launcher):
    pool = await make_pool(min_workers=0, max_workers=2)
    assert pool.live == 0 and launcher.workers == []
    assert float((await pool.infer(request(21))).outputs[0][0]) == 42.0
    assert len(launcher.workers) == 1 and pool.desired == 1  # one, not max_workers
    assert pool.scaling_events[-1].reason.startswith("cold start")


async def test_a_model_whose_workers_cannot_start_answers_unavailable(make_pool, launcher):
    pool = await make_pool(min_workers=0)
    launcher.broken = True
    with pytest.raises(Unavailable, match="does not load"):
        await pool.infer(request(1))
    assert not pool.ready
    await until(lambda: not pool.workers)  # its exit follows its last words
    with pytest.raises(Unavailable, match="retrying soon"):
        pool.admit()  # refused before its body is read, until a start is retried
