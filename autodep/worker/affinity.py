"""Pinning a worker process, with every thread it has, to a set of cores.

`sched_setaffinity` applies to one thread: a thread keeps the mask it had when it was made,
and the runtimes make their pools early (GNU OpenMP at the first parallel op, OpenVINO's TBB
at compile, ONNX Runtime with the session). So the worker sets the mask of every task under
/proc/self/task, each time its batch moves to another set of cores.
"""

from __future__ import annotations

import os
from collections.abc import Collection


def pin(cores: Collection[int]) -> None:
    """Every thread of this process may run on `cores` only (nothing if empty).

    Only the threads whose mask differs are set: a runtime may have put a mask back. OpenVINO's
    TBB workers take their arena's mask (the process mask when OpenVINO loaded) while they
    work and put back the mask they had on entering when they leave, a moment after a batch.
    """
    if not cores:
        return
    wanted = set(cores)
    for task in os.listdir("/proc/self/task"):
        try:
            if os.sched_getaffinity(int(task)) != wanted:
                os.sched_setaffinity(int(task), wanted)
        except (ProcessLookupError, FileNotFoundError):  # the thread ended meanwhile
            pass
