"""Pure decisions of the pool: how big a batch to take (where it runs: `autodep.pool.cores`).

Functions of observations and settings only: no clock, no processes, so they
are tested on plain numbers. The pool does the I/O.
"""

from __future__ import annotations


def batch_to_take(
    *, queued: int, oldest_wait: float, busy: int, max_batch_size: int, max_queue_delay: float
) -> tuple[int, float]:
    """How many queued requests a free worker takes now, or how long it waits for more.

    Returns (count, 0) to go now, or (0, seconds) to wait. A full batch, a
    request that has waited max_queue_delay, or an otherwise idle pool goes at
    once: waiting only pays when other workers are busy, i.e. under load, so a
    lone request never waits.
    """
    if queued == 0:
        return 0, 0.0
    if queued >= max_batch_size or oldest_wait >= max_queue_delay or busy == 0:
        return min(queued, max_batch_size), 0.0
    return 0, max_queue_delay - oldest_wait
