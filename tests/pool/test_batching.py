"""The pool's pure batching decisions (where a batch runs: tests/pool/test_cores.py)."""

from __future__ import annotations

from autodep.pool.batching import batch_to_take


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
