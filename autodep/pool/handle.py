"""The server's side of one worker process.

A `WorkerHandle` starts its process, owns the socket and the two shared
buffers, runs a batch and holds up to two more (so that a worker under load
never waits for the server between two batches), and notices the process's
death. Death is seen through two signals the event loop watches: the process
sentinel (the process is gone; the exit code can be read) and the end of the
socket (every message the worker sent has been read). The handle is finished when both have
arrived, so a worker's last words, such as why its model failed to load, are
never lost to a race with its exit.
"""

from __future__ import annotations

import asyncio
import enum
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from autodep.errors import AutodepError, WorkerError, WorkerStartError, error_for_status
from autodep.pool import items, messages
from autodep.pool.cores import Cores
from autodep.pool.items import Inferred, Item
from autodep.pool.launcher import Launcher, WorkerProcess
from autodep.pool.shm import SLOTS, BufferOverflow, SharedBuffer, TensorSpec
from autodep.worker.spec import WorkerSpec

INLINE_COPY_BYTES = 1 << 20  # larger batches are copied into shared memory off the loop
REAP_TIMEOUT = 1.0  # seconds to collect an exit status once the sentinel has fired
STOP_TIMEOUT = 5.0  # seconds a worker gets to leave after "stop" before it is killed


class WorkerState(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    STOPPING = "stopping"
    EXITED = "exited"


Outcome = Inferred | AutodepError  # one request's answer, or why it has none


@dataclass(frozen=True)
class _Batch:
    """A batch sent to the worker and not answered yet."""

    size: int
    result: asyncio.Future[BatchResult]
    done: Callable[[BatchResult | Exception], None] | None


@dataclass(frozen=True)
class BatchResult:
    outcomes: list[Outcome]  # one per request, in order
    compute_s: float  # the model call
    decode_s: float  # decoding the batch's payloads in the worker
    began: float  # monotonic: when the batch began to occupy the worker (its last one done)


class WorkerHandle:
    def __init__(
        self,
        spec: WorkerSpec,
        launcher: Launcher,
        on_exit: Callable[[WorkerHandle], None],
        cores: Cores = (),
        pool_cores: Cores = (),
    ) -> None:
        # The worker pins itself to `cores` (its own) from its start; `pool_cores` are all the
        # cores a lone batch may use (see autodep.pool.cores). Empty: no pinning.
        self.spec = replace(spec, cores=cores, pool_cores=pool_cores or cores)
        self.cores = cores
        self.state = WorkerState.STARTING
        self.pid: int | None = None
        self.served = 0
        self.startup_s: float | None = None
        self.started_at = time.time()  # wall clock, for /status
        self.idle_since = time.monotonic()
        self.busy_since = self.idle_since
        self.exitcode: int | None = None
        self.crashed = False  # exited without being asked to stop
        self._launcher = launcher
        self._on_exit = on_exit
        self._loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[None] = self._loop.create_future()
        self._batches: dict[int, _Batch] = {}  # sent and not answered yet, by id, in order
        self._sending: asyncio.Task[None] | None = None  # the last batch copied off the loop
        self._exited: asyncio.Future[None] = self._loop.create_future()
        self._process: WorkerProcess | None = None
        self._transport: asyncio.Transport | None = None
        self._socket_open = False
        self._inputs = SharedBuffer.create(f"autodep-{spec.model}-in")
        self._outputs = SharedBuffer.create(f"autodep-{spec.model}-out")
        self._next_id = 0

    async def start(self) -> None:
        """Start the process and wait until it has loaded and warmed up its model."""
        began = time.monotonic()
        ours, theirs = socket.socketpair()
        try:
            with theirs:  # the child holds its own copy once started
                self._process = await self._loop.run_in_executor(
                    None, self._launcher.start, self.spec, theirs, self._inputs, self._outputs
                )
        except BaseException:
            ours.close()
            self._release()
            raise
        self.pid = self._process.pid
        # Open from now on: a worker that exits at once (a model that fails to load) is
        # finished only once its socket has been read to the end, its reason included.
        self._socket_open = True
        self._loop.add_reader(self._process.sentinel, self._on_sentinel)
        self._transport, _ = await self._loop.create_unix_connection(
            lambda: _Protocol(self), sock=ours
        )
        await self._ready
        self.startup_s = time.monotonic() - began
        if self.state is WorkerState.STARTING:
            self.state = WorkerState.IDLE
            self.idle_since = time.monotonic()

    @property
    def batches(self) -> int:
        """Batches sent and not answered yet: the one running, and those it holds."""
        return len(self._batches)

    @property
    def takes_next(self) -> bool:
        """Busy, with room for another batch: it gets it now, and starts it the moment the
        ones before are done, however busy the server's event loop is then."""
        return self.state is WorkerState.BUSY and len(self._batches) < SLOTS

    def run(
        self,
        batch: Sequence[Item],
        threads: int = 0,
        cores: Cores = (),
        done: Callable[[BatchResult | Exception], None] | None = None,
    ) -> asyncio.Future[BatchResult]:
        """Give the worker a batch (one item per request) now, to run with `threads` on
        `cores` (0 and empty: as it started): an idle worker, or one that `takes_next`.

        The worker is busy from this call on, before the caller looks for the next
        idle one. Batch n travels in slot n % SLOTS of the shared buffers; batches are
        sent in the order of this call. The returned future has the batch's outputs;
        `done`, if given, is called with them (or with why there are none) as soon as
        the worker's answer is read, in the same turn of the event loop, so that the
        caller can send the worker more work at once.
        """
        assert self.state is WorkerState.IDLE or self.takes_next
        assert self._transport is not None
        if self.state is WorkerState.IDLE:
            self.state = WorkerState.BUSY
            self.busy_since = time.monotonic()
        self._next_id += 1
        sent = self._batches[self._next_id] = _Batch(len(batch), self._loop.create_future(), done)
        groups = [items.arrays(item) for item in batch]
        large = sum(a.nbytes for group in groups for a in group) > INLINE_COPY_BYTES
        if large or (self._sending is not None and not self._sending.done()):
            # Copied off the loop, after any batch still being copied (they go out in order).
            self._sending = self._loop.create_task(
                self._send_later(self._sending, self._next_id, batch, groups, threads, cores)
            )
        else:
            try:
                self._send(
                    self._next_id, batch, self._inputs.write(groups, self._next_id), threads, cores
                )
            except BufferOverflow as exc:
                self._loop.call_soon(self._finish, self._next_id, exc)  # not inside the caller
        return sent.result

    async def _send_later(
        self,
        previous: asyncio.Task[None] | None,
        batch_id: int,
        batch: Sequence[Item],
        groups: list[list[np.ndarray]],
        threads: int,
        cores: Cores,
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        if batch_id not in self._batches:  # the worker died meanwhile
            return
        try:
            specs = await self._loop.run_in_executor(None, self._inputs.write, groups, batch_id)
        except BufferOverflow as exc:
            self._finish(batch_id, exc)
            return
        if batch_id in self._batches:
            self._send(batch_id, batch, specs, threads, cores)

    def _send(
        self,
        batch_id: int,
        batch: Sequence[Item],
        specs: list[list[TensorSpec]],
        threads: int,
        cores: Cores,
    ) -> None:
        assert self._transport is not None
        self._transport.write(
            messages.pack(
                {
                    "op": "run",
                    "id": batch_id,
                    "inputs": [items.to_wire(i, s) for i, s in zip(batch, specs, strict=True)],
                    "threads": threads,
                    "cores": list(cores),
                }
            )
        )

    def _finish(self, batch_id: int, outcome: messages.Message | Exception) -> None:
        """A batch is over: the worker's reply, or why there is none. The next batch the
        worker holds, if any, runs from now on."""
        sent = self._batches.pop(batch_id, None)
        if sent is None:
            return
        began, self.busy_since = self.busy_since, time.monotonic()
        if self.state is WorkerState.BUSY and not self._batches:
            self.state = WorkerState.IDLE
            self.idle_since = self.busy_since
        result: BatchResult | Exception
        if isinstance(outcome, Exception):
            result = outcome
            _fail(sent.result, result)
        else:
            answers = [self._outcome(answer) for answer in outcome["outputs"]]
            result = BatchResult(answers, outcome["compute_s"], outcome["decode_s"], began)
            self.served += sent.size
            _settle(sent.result, result)
        if sent.done is not None:
            sent.done(result)

    def _outcome(self, answer: messages.Message) -> Outcome:
        if "error" in answer:
            status, message = answer["error"]
            return error_for_status(status, f"model {self.spec.model!r}: {message}")
        outputs = [self._outputs.read(TensorSpec.from_wire(s)) for s in answer["tensors"]]
        return Inferred(outputs, answer["meta"])

    def stop(self, timeout: float = STOP_TIMEOUT) -> Coroutine[Any, Any, None]:
        """Ask the worker to leave now; the coroutine terminates, then kills it if it stays.

        The worker is STOPPING from this call on, so the pool cannot hand it a
        batch between the decision to stop it and the first await.
        """
        if self.state is not WorkerState.EXITED:
            self.state = WorkerState.STOPPING
            if self._transport is not None and not self._transport.is_closing():
                self._transport.write(messages.pack({"op": "stop"}))
        return self._until_exited(timeout)

    async def _until_exited(self, timeout: float) -> None:
        if self._exited.done() or self._process is None:
            return
        for escalate in (self._terminate, self._kill):
            try:
                await asyncio.wait_for(asyncio.shield(self._exited), timeout)
                return
            except TimeoutError:
                escalate()
                timeout = 1.0
        await self._exited

    def kill(self) -> None:
        """End the process now (its death is handled like a crash)."""
        self._kill()

    def _terminate(self) -> None:
        if self._process is not None:
            self._process.terminate()

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()

    def rss_bytes(self) -> int | None:
        import psutil

        if self.pid is None or self.state is WorkerState.EXITED:
            return None
        try:
            return int(psutil.Process(self.pid).memory_info().rss)
        except psutil.Error:
            return None

    # -- events from the loop ------------------------------------------------

    def _on_message(self, message: messages.Message) -> None:
        op = message["op"]
        if op == "ready":
            _settle(self._ready, None)
        elif op == "result":
            self._finish(message["id"], message)
        elif op == "error":
            error_class = WorkerStartError if message["id"] is None else WorkerError
            error = error_class(
                f"model {self.spec.model!r}: {message['error']}",
                remote_traceback=message["traceback"],
            )
            if message["id"] is None:
                _fail(self._ready, error)
            else:
                self._finish(message["id"], error)

    def _on_sentinel(self) -> None:
        assert self._process is not None
        self._loop.remove_reader(self._process.sentinel)
        # Reap it. The forkserver's sentinel carries the exit status, so this
        # returns at once; a spawned child's pipe closes a moment before the
        # child can be waited for, hence the short bound rather than zero.
        self._process.join(REAP_TIMEOUT)
        self.exitcode = self._process.exitcode
        self._maybe_finished()

    def _on_socket_closed(self) -> None:
        self._socket_open = False
        self._maybe_finished()

    def _maybe_finished(self) -> None:
        """Runs once the process has exited and its last message has been read."""
        if self.exitcode is None or self._socket_open or self._exited.done():
            return
        was = self.state
        self.state = WorkerState.EXITED
        _fail(
            self._ready,
            WorkerStartError(
                f"model {self.spec.model!r}: worker exited with code {self.exitcode} "
                "while loading the model"
            ),
        )
        self.crashed = was is not WorkerState.STOPPING
        self._release()
        _settle(self._exited, None)
        self._on_exit(self)  # first: the pool takes the batches back before they fail here
        for batch_id in list(self._batches):
            self._finish(
                batch_id,
                WorkerError(
                    f"model {self.spec.model!r}: worker process died (exit code "
                    f"{self.exitcode}) while running this request"
                ),
            )

    def _release(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._inputs.close()
        self._outputs.close()


class _Protocol(asyncio.Protocol):
    def __init__(self, handle: WorkerHandle) -> None:
        self._handle = handle
        self._unpacker = messages.unpacker()

    def data_received(self, data: bytes) -> None:
        self._unpacker.feed(data)
        for message in self._unpacker:
            self._handle._on_message(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self._handle._on_socket_closed()


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
        future.exception()  # retrieved: a start that nobody awaits is not an unhandled error
