"""(a) Transport: one input tensor's round trip server -> worker -> server.

    shm     autodep's path: the tensor is copied into a memfd `SharedBuffer`, a
            msgpack "run" header crosses a socketpair, the child copies the tensor
            into the out-buffer (as a worker writes its result) and answers with a
            "result" header; the parent copies it out (as `WorkerHandle` does).
    pickle  the baseline: the numpy array pickled through a `multiprocessing.Pipe`
            to the child, which sends it back the same way.

Both children are real processes running an echo loop. Rounds of the two
alternate, so that both see the same background load.

    python -m bench.transport [--quick] [--iterations N] [--rounds R] [--batch B]
"""

from __future__ import annotations

import multiprocessing
import socket
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Protocol

import numpy as np

from autodep.pool import messages
from autodep.pool.shm import SharedBuffer, TensorSpec
from bench.common import (
    IMAGE_SIZE,
    Param,
    Summary,
    parse_args,
    print_header,
    print_table,
    ratio,
    us,
)

PARAMS = [
    Param("iterations", 5000, 300, "timed round trips per method, over all rounds"),
    Param("rounds", 10, 2, "alternating rounds (shm, pickle, pickle, shm, ...)"),
    Param("warmup", 100, 20, "untimed round trips per method first"),
    Param("batch", 1, 1, "images per tensor (N of Nx3x224x224)"),
]
CAPACITY = 64 * 1024 * 1024  # bytes per buffer; autodep's default is larger, and sparse alike


class Echo(Protocol):
    name: str

    def round_trip(self, array: np.ndarray) -> np.ndarray: ...
    def close(self) -> None: ...


# -- shared memory + msgpack header (autodep) ---------------------------------


def _shm_echo(sock: socket.socket, inputs: SharedBuffer, outputs: SharedBuffer) -> None:
    """The child: copy each input into the out-buffer and say where it is."""
    channel = messages.BlockingChannel(sock)
    for message in channel:
        if message["op"] == "stop":
            return
        views = [[inputs.view(TensorSpec.from_wire(s)) for s in g] for g in message["inputs"]]
        specs = outputs.write(views)
        channel.send(
            {
                "op": "result",
                "id": message["id"],
                "outputs": [[s.to_wire() for s in group] for group in specs],
                "compute_s": 0.0,
            }
        )


class ShmEcho:
    name = "shm + msgpack"

    def __init__(self, context: multiprocessing.context.BaseContext) -> None:
        self._inputs = SharedBuffer.create("bench-in", CAPACITY)
        self._outputs = SharedBuffer.create("bench-out", CAPACITY)
        ours, theirs = socket.socketpair()
        with theirs:
            self._process = context.Process(  # type: ignore[attr-defined]
                target=_shm_echo, args=(theirs, self._inputs, self._outputs), daemon=True
            )
            self._process.start()
        self._sock = ours
        self._channel = messages.BlockingChannel(ours)
        self._replies: Iterator[messages.Message] = iter(self._channel)
        self._next_id = 0

    def round_trip(self, array: np.ndarray) -> np.ndarray:
        specs = self._inputs.write([[array]])
        self._next_id += 1
        self._channel.send(
            {
                "op": "run",
                "id": self._next_id,
                "inputs": [[s.to_wire() for s in group] for group in specs],
                "threads": 0,
            }
        )
        reply = next(self._replies)
        return self._outputs.read(TensorSpec.from_wire(reply["outputs"][0][0]))

    def close(self) -> None:
        self._channel.send({"op": "stop"})
        self._process.join(10)
        self._sock.close()
        self._inputs.close()
        self._outputs.close()


# -- pickle through a Pipe (baseline) -----------------------------------------


def _pipe_echo(conn: Connection) -> None:
    """The child: send back whatever arrives, until None."""
    while (item := conn.recv()) is not None:
        conn.send(item)


class PipeEcho:
    name = "pickle + Pipe"

    def __init__(self, context: multiprocessing.context.BaseContext) -> None:
        self._conn, theirs = context.Pipe()
        self._process = context.Process(  # type: ignore[attr-defined]
            target=_pipe_echo, args=(theirs,), daemon=True
        )
        self._process.start()
        theirs.close()

    def round_trip(self, array: np.ndarray) -> np.ndarray:
        self._conn.send(array)
        result: np.ndarray = self._conn.recv()
        return result

    def close(self) -> None:
        self._conn.send(None)
        self._process.join(10)
        self._conn.close()


# -- measuring ----------------------------------------------------------------


def make_tensor(batch: int) -> np.ndarray:
    """What a batch of `batch` decoded images is: batch x 3 x 224 x 224 float32."""
    return np.random.default_rng(0).standard_normal(
        (batch, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32
    )


def make_echoes(context: multiprocessing.context.BaseContext) -> list[Echo]:
    """autodep's transport and the baseline, each with its child running."""
    shm = ShmEcho(context)
    try:
        return [shm, PipeEcho(context)]
    except BaseException:
        shm.close()
        raise


def time_round_trips(echo: Echo, array: np.ndarray, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        echo.round_trip(array)
        samples.append(time.perf_counter() - began)
    return samples


def check(echo: Echo, array: np.ndarray, warmup: int) -> None:
    """Untimed round trips; the tensor must come back unchanged."""
    for _ in range(max(1, warmup)):
        back = echo.round_trip(array)
    if not np.array_equal(back, array):
        raise AssertionError(f"{echo.name}: the tensor came back changed")


def run(echoes: list[Echo], array: np.ndarray, iterations: int, rounds: int) -> list[Summary]:
    """Alternate rounds, reversing the order each round; pool each method's samples."""
    per_round = max(1, iterations // rounds)
    samples: list[list[float]] = [[] for _ in echoes]
    for round_no in range(rounds):
        order = range(len(echoes)) if round_no % 2 == 0 else reversed(range(len(echoes)))
        for i in order:
            samples[i] += time_round_trips(echoes[i], array, per_round)
    return [Summary.of(s) for s in samples]


def report(echoes: list[Echo], summaries: list[Summary], nbytes: int) -> None:
    shm, pickled = summaries
    rows = [
        [
            echo.name,
            us(s.median),
            us(s.p90),
            f"{2 * nbytes / s.median / 1e9:.2f}",
            str(s.n),
        ]
        for echo, s in zip(echoes, summaries, strict=True)
    ]
    ratios = [ratio(pickled.median, shm.median), ratio(pickled.p90, shm.p90), "", ""]
    rows.append(["ratio pickle/shm", *ratios])
    print_table(["method", "median us", "p90 us", "GB/s", "n"], rows)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], PARAMS)
    print_header("transport: tensor round trip server -> worker -> server", args.mode)
    array = make_tensor(args.batch)
    print(f"tensor {array.shape} {array.dtype}, {array.nbytes / 1e6:.2f} MB each way")
    context = multiprocessing.get_context("spawn")
    echoes: list[Echo] = []
    try:
        echoes = make_echoes(context)
        for echo in echoes:
            check(echo, array, args.warmup)
        summaries = run(echoes, array, args.iterations, args.rounds)
    finally:
        for echo in echoes:
            echo.close()
    report(echoes, summaries, array.nbytes)


if __name__ == "__main__":
    main()
