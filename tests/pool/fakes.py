"""A fake `Launcher` for the pool's unit tests: no processes, no torch, milliseconds.

A `FakeWorker` speaks the worker's side of the protocol (`autodep.pool.messages`,
the shared buffers of `autodep.pool.shm`) on the socket the pool gives it, inside
this process's event loop. Its "model" doubles each request's one number; a
negative number fails that request alone (as an undecodable payload does). Its
`FakeProcess` has a real sentinel, the read end of a pipe whose write end is
closed when the fake worker "exits", so the pool sees a death exactly as it sees
a real one: the sentinel turns readable and the socket ends.

    launcher = FakeLauncher()
    launcher.hold = True          # batches wait in the fake model until answered
    worker, values = await launcher.next_batch()
    worker.answer()               # or worker.crash()
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from autodep.config import ModelConfig
from autodep.pool import items, messages
from autodep.pool.shm import SharedBuffer
from autodep.worker.spec import WorkerSpec

SPEC = WorkerSpec(
    model="fake",
    path="fake.pt",
    input="tensor",
    output="raw",
    threads=1,
    config=ModelConfig(name="fake", path=Path("fake.pt"), input="tensor", output="raw"),
)
POISON = 13.0  # a request of this value makes the fake worker running it crash


async def until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Let the loop run until `condition()` holds (fake workers answer within a few turns)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


def request(value: float) -> list[np.ndarray]:
    """One request's item: a single number."""
    return [np.array([value], np.float32)]


class FakeProcess:
    """A `WorkerProcess` whose sentinel is a pipe that turns readable when it exits."""

    def __init__(self, pid: int, worker: FakeWorker) -> None:
        self.pid = pid
        self.exitcode: int | None = None
        self._worker = worker
        self._read, self._write = os.pipe()

    @property
    def sentinel(self) -> int:
        return self._read

    def exit(self, code: int) -> None:
        """Leave now: the socket ends and the sentinel fires (the order a real exit gives)."""
        if self.exitcode is not None:
            return
        self.exitcode = code
        self._worker.close()
        os.close(self._write)

    def terminate(self) -> None:
        self.exit(-signal.SIGTERM)

    def kill(self) -> None:
        self.exit(-signal.SIGKILL)

    def join(self, timeout: float | None = None) -> None:
        """Nothing to reap: `exit` set the exit code before the sentinel fired."""

    def release(self) -> None:
        self.kill()
        os.close(self._read)


class FakeWorker(asyncio.Protocol):
    """The worker's end of the socket, in the event loop."""

    def __init__(
        self, launcher: FakeLauncher, pid: int, inputs: SharedBuffer, outputs: SharedBuffer
    ) -> None:
        self.process = FakeProcess(pid, self)
        self.batches: list[list[float]] = []  # the values of every batch it was sent
        self._launcher = launcher
        self._inputs = inputs
        self._outputs = outputs
        self._held: list[tuple[int, list[float]]] = []  # batches waiting for answer()
        self._transport: asyncio.Transport | None = None
        self._unpacker = messages.unpacker()

    # -- what a test does ----------------------------------------------------

    def answer(self) -> None:
        """Answer the oldest batch held in the fake model."""
        request_id, values = self._held.pop(0)
        self._send(self._result(request_id, values))

    def crash(self, code: int = 1) -> None:
        self.process.exit(code)

    @property
    def holding(self) -> int:
        return len(self._held)

    # -- the protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if self.process.exitcode is not None:  # killed before it connected
            transport.close()
        elif self._launcher.broken:
            self._send(messages.error_message(RuntimeError("the model does not load"), None))
            self.process.exit(1)
        else:
            self._send({"op": "ready"})

    def data_received(self, data: bytes) -> None:
        self._unpacker.feed(data)
        for message in self._unpacker:
            if self.process.exitcode is not None:
                return
            if message["op"] == "stop":
                self.process.exit(0)
            elif message["op"] == "run":
                self._run(message)

    def _run(self, message: dict[str, Any]) -> None:
        values = [
            float(items.from_wire(wire, self._inputs)[0][0])  # type: ignore[index]
            for wire in message["inputs"]
        ]
        self.batches.append(values)
        self._launcher.ran(self, values)
        if POISON in values:
            self.crash()
        elif self._launcher.hold:
            self._held.append((message["id"], values))
        else:
            self._send(self._result(message["id"], values))

    def _result(self, request_id: int, values: list[float]) -> messages.Message:
        good = [v for v in values if v >= 0]
        outputs = [[np.array([2 * v], np.float32)] for v in good]
        specs = iter(self._outputs.write(outputs, slot=request_id))
        answers = [
            {"tensors": [s.to_wire() for s in next(specs)], "meta": {}}
            if v >= 0
            else {"error": [400, f"negative input {v:g}"]}
            for v in values
        ]
        return {
            "op": "result",
            "id": request_id,
            "outputs": answers,
            "compute_s": 0.001,
            "decode_s": 0.0,
        }

    def _send(self, message: messages.Message) -> None:
        assert self._transport is not None
        self._transport.write(messages.pack(message))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._inputs.close()
        self._outputs.close()


class FakeLauncher:
    """Starts `FakeWorker`s; `hold`, `broken` and the queues let a test drive them."""

    def __init__(self) -> None:
        self.hold = False  # batches wait in the fake model until a test answers them
        self.broken = False  # workers fail to load their model (and exit 1)
        self.workers: list[FakeWorker] = []  # every worker started, in order
        self._loop = asyncio.get_running_loop()
        self._batches: asyncio.Queue[tuple[FakeWorker, list[float]]] = asyncio.Queue()
        self._pids = itertools.count(1_000_000)  # not a real process's id
        self._tasks: set[asyncio.Task[Any]] = set()

    def prepare(self) -> None:
        """Nothing to boot."""

    def start(
        self, spec: WorkerSpec, sock: socket.socket, inputs: SharedBuffer, outputs: SharedBuffer
    ) -> FakeProcess:
        """Called in an executor thread, as the real launcher is: the worker joins the loop."""
        own = sock.dup()  # the pool closes its copy once this returns, as after a fork
        worker = FakeWorker(self, next(self._pids), _attached(inputs), _attached(outputs))
        self._loop.call_soon_threadsafe(self._connect, worker, own)
        return worker.process

    def _connect(self, worker: FakeWorker, sock: socket.socket) -> None:
        self.workers.append(worker)
        task = self._loop.create_task(self._loop.create_unix_connection(lambda: worker, sock=sock))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def ran(self, worker: FakeWorker, values: list[float]) -> None:
        self._batches.put_nowait((worker, values))

    async def next_batch(self, timeout: float = 5.0) -> tuple[FakeWorker, list[float]]:
        """The next batch any worker was sent (and its worker), in the order sent."""
        async with asyncio.timeout(timeout):
            return await self._batches.get()

    @property
    def pending_batches(self) -> int:
        return self._batches.qsize()

    def close(self) -> None:
        for worker in self.workers:
            worker.process.release()


def _attached(buffer: SharedBuffer) -> SharedBuffer:
    """The worker's own mapping of a buffer, as a child process gets from its fd."""
    return SharedBuffer(os.dup(buffer.fd), buffer.capacity)
