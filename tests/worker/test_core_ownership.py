"""Each worker owns its cores (real workers): read from each worker's and each thread's
affinity (/proc/PID/task/*), never from timing."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import numpy as np
import psutil
import pytest

from autodep.pool.cores import host_cores
from tests import models
from tests.support.images import image_bytes

pytestmark = pytest.mark.skipif(len(host_cores()) < 2, reason="needs two cores to share out")


def thread_cores(pid: int) -> set[tuple[int, ...]]:
    """The distinct affinity masks of a process's threads."""
    masks = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError, FileNotFoundError):
            masks.add(tuple(sorted(os.sched_getaffinity(int(task)))))
    return masks


def ran(pid: int) -> dict[int, tuple[int, int]]:
    """Each thread's time on a CPU so far (ns, /proc/.../schedstat) and the CPU it last ran on."""
    found = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            run_ns = int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
            stat = Path(f"/proc/{pid}/task/{task}/stat").read_text().rsplit(")", 1)[1].split()
            found[int(task)] = (run_ns, int(stat[36]))  # field 39: processor
    return found


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


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("variant", "runtime"), [("openvino-f32-latency", "openvino"), ("onnxruntime", "onnxruntime")]
)
async def test_runtimes_that_fix_threads_keep_to_their_own_cores_and_a_lone_batch_takes_the_pool(
    serve, color_model, tmp_path, variant, runtime
):
    """OpenVINO and ONNX Runtime fix their threads at load: a second form serves lone batches."""
    pytest.importorskip(runtime)
    cores = host_cores()
    server = await serve(
        color_model,
        optimize=variant,
        optimize_budget=20.0,
        cache_dir=tmp_path,
        min_workers=2,
        max_workers=2,
    )
    served = server.service.model("colors")
    assert served.variant.name == variant
    own = owned(server, "colors")
    first, second = own.values()
    assert set(first).isdisjoint(second)
    # OpenVINO's idle TBB threads may keep, while they sleep, the mask they had when they
    # joined an arena (it puts that back when they leave one): so what is checked here is the
    # worker's own mask, and where its threads actually run.
    for pid, mine in own.items():  # at rest, after loading both forms
        assert psutil.Process(pid).cpu_affinity() == list(mine)

    # A lone request runs on every core (the mask stays where the last batch ran).
    status, body, _ = await server.predict(image_bytes("blue"))
    assert status == 200 and body["predictions"][0]["label"] == "blue"
    [lone] = [w for w in served.pool.workers if w.served == 1]
    assert psutil.Process(lone.pid).cpu_affinity() == list(cores)

    # Both workers busy, each told to keep to its own cores (as the pool does under load):
    # every thread that ran meanwhile last ran on one of its worker's cores.
    item = [np.zeros(shape, dtype) for shape, dtype in served.codec.decoder.example()]
    handles = served.pool.workers
    before = {pid: ran(pid) for pid in own}
    for _ in range(20):
        await asyncio.gather(*(w.run([item], len(w.cores), w.cores) for w in handles))
    for pid, mine in own.items():
        assert psutil.Process(pid).cpu_affinity() == list(mine)
        worked = {
            task: cpu
            for task, (run_ns, cpu) in ran(pid).items()
            if run_ns > before[pid].get(task, (0, 0))[0]
        }
        assert pid in worked  # the worker's own thread served the batches
        assert set(worked.values()) <= set(mine), worked
