"""Starting worker processes: the one place that knows how processes are made.

`Launcher` is the small interface the pool uses; `ProcessLauncher` implements
it with a multiprocessing context. The default, "forkserver", forks each worker
from a server process that imported torch and torchvision once, so a worker
starts in a fraction of a second instead of paying the seconds of
`import torch`. The forkserver never runs a torch op, which keeps it safe from
the GNU OpenMP fork hazard. "spawn" exists for comparison (bench/).

Workers wait for OpenMP threads with a bounded spin (`GOMP_SPINCOUNT`, see
`OMP_SPIN_COUNT`) unless the environment sets a policy of its own. libgomp
reads it once, when the forkserver imports torch, so it is set before that.
GNU OpenMP's default spins so long at every barrier that, on a machine where
anything else runs, a spinning thread keeps its descheduled sibling off the
core and a resnet18 call takes seconds instead of tens of milliseconds;
blocking at once (OMP_WAIT_POLICY=PASSIVE) pays a futex wake-up at every
barrier, 1.5x slower on a quiet Xeon. `python -m bench.omp` measures both
conditions; the bounded spin stays near the best in each.
"""

from __future__ import annotations

import io
import multiprocessing
import multiprocessing.forkserver
import os
import socket
from multiprocessing import context, popen_forkserver, reduction, resource_tracker, spawn, util
from typing import Any, Literal, Protocol

from autodep.pool.shm import SharedBuffer
from autodep.worker import entry, noop
from autodep.worker.spec import WorkerSpec

PRELOAD = ["torch", "torchvision", "autodep.worker.main"]
# Spins before an idle OpenMP thread blocks: long enough to bridge the gaps
# between one model's ops, short enough that a waiting thread soon frees the core.
OMP_SPIN_COUNT = "1000"
OMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


class WorkerProcess(Protocol):
    @property
    def pid(self) -> int | None: ...
    @property
    def sentinel(self) -> int: ...
    @property
    def exitcode(self) -> int | None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def join(self, timeout: float | None = None) -> None: ...


class Launcher(Protocol):
    def prepare(self) -> None:
        """Pay one-time costs (blocking; run it in an executor)."""

    def start(
        self, spec: WorkerSpec, sock: socket.socket, inputs: SharedBuffer, outputs: SharedBuffer
    ) -> WorkerProcess:
        """Start one worker (blocking; run it in an executor)."""


class _ForkserverPopen(popen_forkserver.Popen):
    """The stdlib's forkserver launch, minus re-running the parent's `__main__`.

    multiprocessing makes each child import the parent's main module again (to
    find pickled functions defined there). A worker needs nothing from it, and
    an embedding app's main module may be slow to import or may lack the
    `if __name__ == "__main__"` guard. The body is `Popen._launch` of CPython
    3.11 with the `init_main_*` entries left out of the preparation data.
    """

    def _launch(self, process_obj: Any) -> None:
        prep_data = {
            key: value
            for key, value in spawn.get_preparation_data(process_obj._name).items()
            if not key.startswith("init_main")
        }
        buf = io.BytesIO()
        context.set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            context.set_spawning_popen(None)
        self.sentinel, w = multiprocessing.forkserver.connect_to_new_process(
            self._fds  # type: ignore[attr-defined]
        )
        _parent_w = os.dup(w)  # the child's sentinel of its parent, as in the stdlib
        self.finalizer = util.Finalize(
            self,
            util.close_fds,  # type: ignore[attr-defined]
            (_parent_w, self.sentinel),
        )
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = multiprocessing.forkserver.read_signed(self.sentinel)


class _ForkserverProcess(context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> _ForkserverPopen:
        return _ForkserverPopen(process_obj)


class ProcessLauncher:
    def __init__(self, method: Literal["forkserver", "spawn"] = "forkserver") -> None:
        self._context = multiprocessing.get_context(method)
        if method == "forkserver":
            self._context.set_forkserver_preload(PRELOAD)
        self.method = method

    def prepare(self) -> None:
        """Boot the forkserver and wait until it has imported torch.

        `ensure_running` only starts the process; the imports take seconds
        more. Starting one no-op child waits for them, so that the first real
        worker's start time is its own.
        """
        if self.method == "forkserver":
            if not any(name in os.environ for name in OMP_VARIABLES):
                os.environ["GOMP_SPINCOUNT"] = OMP_SPIN_COUNT
            child = _ForkserverProcess(target=noop, name="autodep-forkserver-probe")
            child.start()
            child.join()

    def start(
        self, spec: WorkerSpec, sock: socket.socket, inputs: SharedBuffer, outputs: SharedBuffer
    ) -> WorkerProcess:
        process_class = (
            _ForkserverProcess if self.method == "forkserver" else self._context.Process  # type: ignore[attr-defined]
        )
        process = process_class(
            target=entry,
            args=(spec, sock, inputs, outputs),
            name=f"autodep-worker-{spec.model}",
            daemon=True,
        )
        process.start()
        return process


def stop_helpers() -> None:
    """Stop this process's forkserver and resource tracker, and wait until both are gone.

    Both leave by themselves once this process has exited, but only a moment
    later (the forkserver has torch to tear down). A program that owns the
    whole process, such as `autodep.serve`, calls this after its workers have
    stopped so that it exits only when every process it started is gone. An
    embedding app must not: other code in it may still use the forkserver.
    Blocking; the stdlib's own stop methods (private, stable since 3.8).
    """
    multiprocessing.forkserver._forkserver._stop()  # type: ignore[attr-defined]
    resource_tracker._resource_tracker._stop()  # type: ignore[attr-defined]
