"""The pool's pure scaling decisions."""

from __future__ import annotations

from autodep.pool.scaling import workers_to_start, workers_to_stop


def start(**kw):
    base = dict(queued=0, idle=0, starting=0, running=1, max_workers=4, max_batch_size=8)
    return workers_to_start(**{**base, **kw})


def test_no_start_without_queued_work_or_with_an_idle_worker():
    assert start(queued=0) == 0
    assert start(queued=5, idle=1) == 0


def test_starts_one_worker_per_queued_batch_up_to_the_maximum():
    assert start(queued=1) == 1
    assert start(queued=17) == 3
    assert start(queued=100) == 3  # 1 running + 3 = max_workers
    assert start(queued=100, running=4) == 0


def test_workers_already_starting_count_against_the_need():
    assert start(queued=8, starting=1) == 0
    assert start(queued=9, starting=1) == 1


def test_stops_only_workers_idle_long_enough_and_keeps_the_minimum():
    assert workers_to_stop([0.0, 5.0], now=10.0, total=3, min_workers=1, idle_timeout=8) == 1
    assert workers_to_stop([0.0, 1.0], now=10.0, total=3, min_workers=1, idle_timeout=8) == 2
    assert workers_to_stop([0.0, 1.0], now=10.0, total=2, min_workers=2, idle_timeout=8) == 0
    assert workers_to_stop([0.0], now=10.0, total=1, min_workers=0, idle_timeout=8) == 1
