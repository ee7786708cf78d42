"""What a test may not leave behind: worker processes and shared-memory segments."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import psutil

# Processes a test's fixtures start that are not workers (the S3 test server): not leaks.
SERVER_PIDS: set[int] = set()


def worker_pids() -> set[int]:
    """Our worker processes: what runs under the forkserver this process started, and any
    other child that is not one of multiprocessing's helpers (a spawned worker, a server).

    A forked worker has the forkserver's command line, so it is found by its parent.
    """
    found: set[int] = set()
    for child in psutil.Process().children():
        if child.pid in SERVER_PIDS:
            continue
        line = " ".join(_cmdline(child))
        if "forkserver" in line:
            found |= {p.pid for p in _children(child)}
        elif "resource_tracker" not in line:
            found.add(child.pid)
    return found


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def shm_entries() -> set[str]:
    return set(os.listdir("/dev/shm"))


@contextlib.contextmanager
def checked_for_leftovers() -> Iterator[None]:
    """No worker process and no shared-memory segment made inside the block outlives it."""
    shm_before = shm_entries()
    yield
    assert worker_pids() == set(), "worker processes outlived the test"
    new = shm_entries() - shm_before
    assert new - held_by_others(new) == set(), "shared-memory segments outlived the test"


def held_by_others(entries: set[str]) -> set[str]:
    """Those of `entries` that a process outside this one's tree has mapped.

    /dev/shm is the machine's: other programs (multiprocessing semaphores of
    another job, say) come and go in it while a test runs.
    """
    if not entries:
        return set()
    ours = {os.getpid()} | {p.pid for p in psutil.Process().children(recursive=True)}
    held = set()
    for process in psutil.process_iter():
        if process.pid in ours:
            continue
        with contextlib.suppress(psutil.Error):
            held |= {m.path.rsplit("/", 1)[-1] for m in process.memory_maps(grouped=True)}
    return entries & held
