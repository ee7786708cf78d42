"""Pure decisions of the pool: how many workers to start, which to stop.

Functions of observations and settings only: no clock, no processes, so they
are tested on plain numbers. The pool does the I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def workers_to_start(
    *, queued: int, idle: int, starting: int, running: int, max_workers: int, max_batch_size: int
) -> int:
    """Workers to add so that queued work finds a worker soon.

    Each worker that is starting will take a whole batch when it is ready, so
    only the queued batches beyond those call for more workers.
    """
    if queued == 0 or idle > 0:
        return 0
    room = max_workers - running - starting
    wanted = math.ceil(queued / max_batch_size) - starting
    return max(0, min(room, wanted))


def workers_to_stop(
    idle_since: Sequence[float], *, now: float, total: int, min_workers: int, idle_timeout: float
) -> int:
    """How many of the idle workers (given by when each became idle) to stop now."""
    expired = sum(1 for since in idle_since if now - since >= idle_timeout)
    return max(0, min(expired, total - min_workers))
