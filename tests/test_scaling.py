"""The pool's pure scaling decisions."""

from __future__ import annotations

from autodep.pool.scaling import (
    batch_to_take,
    threads_for_batch,
    workers_to_start,
    workers_to_stop,
)


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


def take(**kw):
    base = dict(queued=1, oldest_wait=0.0, busy=1, max_batch_size=4, max_queue_delay=0.01)
    return batch_to_take(**{**base, **kw})


def test_a_lone_request_goes_at_once_even_with_a_queue_delay():
    assert take(queued=1, busy=0) == (1, 0.0)


def test_under_load_a_partial_batch_waits_for_the_rest_of_the_delay():
    count, wait = take(queued=2, oldest_wait=0.004)
    assert count == 0 and abs(wait - 0.006) < 1e-9
    assert take(queued=2, oldest_wait=0.01) == (2, 0.0)
    assert take(queued=9) == (4, 0.0)
    assert take(queued=3, max_queue_delay=0.0) == (3, 0.0)
    assert take(queued=0) == (0, 0.0)


def test_threads_share_the_cores_among_busy_workers():
    assert threads_for_batch(cores=2, busy=1, configured=None) == 2
    assert threads_for_batch(cores=2, busy=2, configured=None) == 1
    assert threads_for_batch(cores=2, busy=5, configured=None) == 1
    assert threads_for_batch(cores=2, busy=1, configured=1) == 1
