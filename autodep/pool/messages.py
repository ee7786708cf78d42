"""Messages between the server and a worker: msgpack maps on a Unix socket.

Only these small headers cross the socket; tensor data and payload bytes stay
in the shared buffers (`autodep.pool.shm`), described by `TensorSpec`s.

server -> worker
    {"op": "run", "id": int, "inputs": [item, ...], "threads": int, "cores": [int, ...]}
        one item per request of the batch, in the input buffer (`autodep.pool.items`);
        batch `id` uses slot id % 3 of both buffers, so a worker may be sent its next
        batches while it runs one (`autodep.pool.shm`)
    {"op": "stop"}
worker -> server
    {"op": "ready"}                              after load and warm-up
    {"op": "result", "id": int, "outputs": [answer, ...], "compute_s": float, "decode_s": float}
        answer: {"tensors": [spec, ...], "meta": {...}} or {"error": [status, message]}
        (a request whose payload does not decode fails alone, not its batch)
    {"op": "error", "id": int | None, "error": "Class: message", "traceback": str}
        id None: the worker failed to start and is exiting; else the batch failed
"""

from __future__ import annotations

import socket
import traceback
from collections.abc import Iterator
from typing import Any

import msgpack

Message = dict[str, Any]


def pack(message: Message) -> bytes:
    return msgpack.packb(message)  # type: ignore[no-any-return]


def unpacker() -> msgpack.Unpacker:
    """A streaming decoder: feed it bytes as they arrive, iterate whole messages."""
    return msgpack.Unpacker(use_list=True, raw=False)


def error_message(exc: BaseException, request_id: int | None) -> Message:
    """An exception as text: it crosses the process boundary, its class does not."""
    return {
        "op": "error",
        "id": request_id,
        "error": f"{type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(exc)),
    }


class BlockingChannel:
    """The worker's end of the socket: blocking reads and writes of messages."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._unpacker = unpacker()

    def send(self, message: Message) -> None:
        self._sock.sendall(pack(message))

    def __iter__(self) -> Iterator[Message]:
        """Messages until the server closes its end."""
        while True:
            yield from self._unpacker
            data = self._sock.recv(1 << 16)
            if not data:
                return
            self._unpacker.feed(data)
