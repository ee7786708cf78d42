"""The server process's CPU priority: below its workers' once they are the bottleneck.

Under overload the event loop answers and refuses requests as fast as clients send
them; at the same priority as the workers, that work takes their cores and the model
serves less (`python -m bench.faults --sections overload`). Niced, the server gets what
the workers leave, and they keep their cores. But where the server is the bottleneck
(a fast model: the workers wait for it), niced it would serve less, so it yields only
once a model's queue has overflowed for two periods in a row (half a tick each) with
all its workers serving: a queue fills only when its workers cannot keep up with what
the server admits. Not while workers start: a cold start or a scale-up fills the queue
for a moment whoever the bottleneck. It yields once: an unprivileged process cannot
take a priority back.

Workers are forked by the forkserver, started before, so they keep their priority.
Linux keeps a niceness per thread: each thread of the process is reniced, and threads
made later inherit it from the one that makes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Callable, Sequence

import psutil

log = logging.getLogger(__name__)

PERIODS = 2  # periods in a row with refusals that show the workers to be the bottleneck


def overloaded(refused: Sequence[int]) -> bool:
    """Were requests refused for a full queue in each of the last PERIODS periods?"""
    return len(refused) >= PERIODS and all(n > 0 for n in list(refused)[-PERIODS:])


async def yield_when_overloaded(refused: Callable[[], int], nice: int, period: float) -> None:
    """Every `period` seconds, look at `refused()` (requests refused so far for a full queue,
    all workers serving); once `overloaded`, take niceness `nice` and return."""
    counts: deque[int] = deque(maxlen=PERIODS)
    last = refused()
    while True:
        await asyncio.sleep(period)  # the sampling period
        now = refused()
        counts.append(max(0, now - last))  # a version retired with its count: not negative
        last = now
        if overloaded(counts):
            yield_to_workers(nice)
            log.info("a queue overflowed with all its workers serving: niceness %d", nice)
            return


def yield_to_workers(nice: int) -> None:
    """Raise every thread of this process to niceness `nice` (never lowered: that would need
    privileges)."""
    for thread in psutil.Process().threads():
        with contextlib.suppress(OSError):  # a thread that has just ended
            if os.getpriority(os.PRIO_PROCESS, thread.id) < nice:
                os.setpriority(os.PRIO_PROCESS, thread.id, nice)
