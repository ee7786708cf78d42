"""(b) Worker start to first result, resnet18: forkserver (autodep's default) vs spawn.

Each start goes through autodep's `WorkerHandle`, so it covers what a pool pays:
the process is created (`launched`), loads the model and runs its warm-up calls
(`ready`), then answers one real request (`first result`). The forkserver's
one-time boot (it imports torch and torchvision) is timed separately, before the
first start. Starts of the two kinds alternate.

    python -m bench.startup [--quick] [--starts N] [--threads T]
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from multiprocessing import connection
from pathlib import Path
from typing import Literal

import numpy as np

from autodep.codecs.base import Payload
from autodep.codecs.image import ImageDecoder
from autodep.config import model_from_file
from autodep.pool.handle import WorkerHandle
from autodep.pool.items import Inferred
from autodep.pool.launcher import (
    PRELOAD,
    ProcessLauncher,
    WorkerProcess,
    _ForkserverProcess,
)
from autodep.pool.shm import SharedBuffer
from autodep.worker.spec import WorkerSpec
from bench.common import (
    Param,
    make_jpeg,
    make_resnet18,
    median,
    parse_args,
    print_header,
    print_table,
    ratio,
)

PARAMS = [
    Param("starts", 5, 1, "worker starts per launcher"),
    Param("threads", len(os.sched_getaffinity(0)), len(os.sched_getaffinity(0)), "torch threads"),
]
READY_TARGET_S = 0.5  # the target for a forkserver worker of resnet18
REAP_TIMEOUT = 5.0  # seconds to wait for an exiting worker's exit code
Method = Literal["forkserver", "spawn"]


class TimedLauncher:
    """autodep's `ProcessLauncher`, noting when the last process was created."""

    def __init__(self, method: Method) -> None:
        self.method = method
        self._launcher = ProcessLauncher(method)
        self.launched_at = 0.0

    def prepare(self) -> None:
        self._launcher.prepare()

    def start(
        self, spec: WorkerSpec, sock: socket.socket, inputs: SharedBuffer, outputs: SharedBuffer
    ) -> WorkerProcess:
        process = self._launcher.start(spec, sock, inputs, outputs)
        self.launched_at = time.perf_counter()
        return ReapingProcess(process)


class ReapingProcess:
    """A worker process whose `join(0)` reaps it once its sentinel is ready.

    Works around a race in `WorkerHandle._on_sentinel` (autodep/pool/handle.py):
    with "spawn" the sentinel pipe closes a moment before the child can be
    waited for, so `join(0)` often leaves `exitcode` None and `stop()` then waits
    forever. A forkserver sentinel carries the exit code, so it is unaffected.
    """

    def __init__(self, process: WorkerProcess) -> None:
        self._process = process

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def sentinel(self) -> int:
        return self._process.sentinel

    @property
    def exitcode(self) -> int | None:
        return self._process.exitcode

    def terminate(self) -> None:
        self._process.terminate()

    def kill(self) -> None:
        self._process.kill()

    def join(self, timeout: float | None = None) -> None:
        if timeout == 0 and connection.wait([self.sentinel], 0):
            timeout = REAP_TIMEOUT  # exiting: the exit code follows in moments
        self._process.join(timeout)


@dataclass(frozen=True)
class Start:
    """Seconds from the start request to each milestone."""

    launched: float
    ready: float
    first_result: float
    first_compute: float  # the worker's own timing of the model call for the first result


async def one_start(launcher: TimedLauncher, spec: WorkerSpec, tensor: np.ndarray) -> Start:
    began = time.perf_counter()
    handle = WorkerHandle(spec, launcher, lambda _: None)
    try:
        await handle.start()
        ready = time.perf_counter()
        result = await handle.run([[tensor]])
        done = time.perf_counter()
    finally:
        await handle.stop()
    outcome = result.outcomes[0]
    if not isinstance(outcome, Inferred):
        raise AssertionError(f"the first request failed: {outcome}")
    check(outcome.outputs[0])
    return Start(launcher.launched_at - began, ready - began, done - began, result.compute_s)


def check(probs: np.ndarray) -> None:
    if probs.shape != (1000,) or not np.isclose(probs.sum(), 1.0, atol=1e-3):
        raise AssertionError(f"unexpected first result: shape {probs.shape}, sum {probs.sum()}")


@dataclass(frozen=True)
class Boot:
    """The forkserver's one-time boot, in seconds."""

    prepare: float  # `launcher.prepare()` returned
    preloaded: float  # a no-op child has been forked: the forkserver has imported PRELOAD


def boot(launcher: TimedLauncher) -> Boot:
    began = time.perf_counter()
    launcher.prepare()
    prepared = time.perf_counter()
    # The same process class the launcher uses, with a target that does nothing.
    noop = _ForkserverProcess(target=os.getpid, name="bench-noop", daemon=True)
    noop.start()
    noop.join()
    return Boot(prepared - began, time.perf_counter() - began)


async def measure(
    launchers: list[TimedLauncher], spec: WorkerSpec, tensor: np.ndarray, starts: int
) -> dict[str, list[Start]]:
    """Alternate the launchers, reversing their order each round."""
    results: dict[str, list[Start]] = {launcher.method: [] for launcher in launchers}
    for round_no in range(starts):
        order = launchers if round_no % 2 == 0 else launchers[::-1]
        for launcher in order:
            start = await one_start(launcher, spec, tensor)
            results[launcher.method].append(start)
            print(
                f"  {launcher.method:<10} launched {start.launched:6.3f} s  "
                f"ready {start.ready:6.3f} s  first result {start.first_result:6.3f} s "
                f"(model call {start.first_compute:.3f} s)"
            )
    return results


def report(results: dict[str, list[Start]], boot: Boot, warmup_calls: int) -> None:
    medians = {
        method: [median([getattr(s, f) for s in starts]) for f in Start.__dataclass_fields__]
        for method, starts in results.items()
    }
    fork, spawn = medians["forkserver"], medians["spawn"]
    rows = [[method, *(f"{v:.3f}" for v in values)] for method, values in medians.items()]
    rows.append(["ratio spawn/forkserver", *map(ratio, spawn[:3], fork[:3]), ""])
    print(f"median seconds from start request, {len(results['forkserver'])} starts each:")
    print_table(["launcher", "launched", "ready", "first result", "its model call"], rows)
    print(
        f"forkserver one-time boot (imports {', '.join(PRELOAD)}): {boot.preloaded:.3f} s "
        f"(launcher.prepare() returned after {boot.prepare:.3f} s, before the imports were done)"
    )
    print(f"ready = model loaded + {warmup_calls} warm-up calls; first result = ready + 1 request")
    verdict = "met" if fork[1] < READY_TARGET_S else "NOT met"
    print(f"target: forkserver worker ready in < {READY_TARGET_S} s: {verdict} ({fork[1]:.3f} s)")


def worker_spec(model_path: Path, threads: int) -> tuple[WorkerSpec, np.ndarray]:
    """The spec a pool would give a bare resnet18.pt, and one decoded request."""
    config = model_from_file(model_path)
    decoder = ImageDecoder(config)
    spec = WorkerSpec.of(config, threads, decoder.example())
    tensor = decoder.decode(Payload(make_jpeg(), "image/jpeg")).tensors[0]
    return spec, tensor


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], PARAMS)
    print_header("startup: worker start to first result, resnet18", args.mode)
    with tempfile.TemporaryDirectory(prefix="autodep-bench-") as tmp:
        spec, tensor = worker_spec(make_resnet18(Path(tmp)), args.threads)
        launchers = [TimedLauncher("forkserver"), TimedLauncher("spawn")]
        booted = boot(launchers[0])
        results = asyncio.run(measure(launchers, spec, tensor, args.starts))
    report(results, booted, spec.warmup_calls)


if __name__ == "__main__":
    main()
