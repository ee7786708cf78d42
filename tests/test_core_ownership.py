"""Each worker owns its cores (real workers): read from each worker's and each thread's
affinity (/proc/PID/task/*), never from timing."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import psutil
import pytest

from autodep.pool.cores import host_cores
from tests import models
from tests.conftest import image_bytes

pytestmark = pytest.mark.skipif(len(host_cores()) < 2, reason="needs two cores to share out")


def thread_cores(pid: int) -> set[tuple[int, ...]]:
    """The distinct affinity masks of a process's threads."""
    masks = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            masks.add(tuple(sorted(os.sched_getaffinity(int(task)))))
        except (ProcessLookupError, FileNotFoundError):
            pass
    return masks


def owned(server, model: str) -> dict[int, tuple[int, ...]]:
    """Each worker's pid and the cores the pool says it owns."""
    pool = server.service.model(model).pool
    return {w.pid: w.cores for w in pool.workers}


@pytest.fixture
def turnstile(tmp_path: Path):
    gate = models.Turnstile(tmp_path / "gate")
    path = models.save(models.TurnstileColorNet(str(gate.path)), tmp_path / "turnstile.pt")
    yield path, gate
    gate.release(255 - gate.path.read_bytes()[1])  # let everything out before shutdown


async def test_torch_workers_keep_to_their_own_cores_and_a_lone_batch_takes_the_pool(
    serve, turnstile
):
    path, gate = turnstile
    cores = host_cores()
    server = await serve(path, min_workers=2, max_workers=2, max_batch_size=1)
    own = owned(server, "turnstile")
    assert len(own) == 2
    first, second = own.values()
    assert set(first).isdisjoint(second) and len(first) == len(cores) // 2
    for pid, mine in own.items():  # at rest, after load and warm-up
        assert psutil.Process(pid).cpu_affinity() == list(mine)
        assert thread_cores(pid) == {mine}

    requests = [asyncio.ensure_future(server.predict(image_bytes("red")))]
    await gate.wait_entered(1)
    # Alone, the batch runs on every core of the pool: the worker moved all its threads.
    [lone] = [w for w in server.service.model("turnstile").pool.workers if w.state.value == "busy"]
    assert thread_cores(lone.pid) == {cores}
    requests += [asyncio.ensure_future(server.predict(image_bytes("red"))) for _ in range(3)]
    await gate.wait_entered(2)  # the other worker took the second request, on its own cores
    [other] = [pid for pid in own if pid != lone.pid]
    assert thread_cores(other) == {own[other]}
    gate.release()  # the lone batch ends; its worker takes the third request, under load
    await gate.wait_entered(3)
    for pid, mine in own.items():  # both busy: each on its own cores, disjoint
        assert thread_cores(pid) == {mine}
    gate.release(3)
    assert [status for status, _, _ in await asyncio.gather(*requests)] == [200] * 4
