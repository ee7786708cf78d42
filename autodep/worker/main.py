"""Entry point of a worker process.

Started from the forkserver, which has already imported torch and torchvision,
so a new worker pays only for loading its model and warming it up. It reports
`ready` on its socket, then serves `run` messages one batch at a time until
told to stop, until the server closes the socket, or until the server dies.

Workers ignore SIGINT: a Ctrl-C in a terminal reaches the whole process group,
and the server must be the one to drain the queue and stop its workers in
order. SIGTERM keeps its default, so `terminate()` still ends a worker.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import socket
import threading
import time

import numpy as np
import torch
import torchvision  # noqa: F401  (registers torchvision ops used by detection models)

from autodep.pool.messages import BlockingChannel, Message, error_message
from autodep.pool.shm import SharedBuffer, TensorSpec
from autodep.worker.runners import Runner, load_model, make_runner
from autodep.worker.spec import WorkerSpec

_PR_SET_PDEATHSIG = 1


def run_worker(
    spec: WorkerSpec, sock: socket.socket, inputs: SharedBuffer, outputs: SharedBuffer
) -> None:
    _exit_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = BlockingChannel(sock)
    torch.set_num_threads(spec.threads)
    try:
        with torch.inference_mode():
            runner = make_runner(load_model(spec.path, spec.variant), spec.input, spec.output)
            _warm_up(runner, spec)
    except Exception as exc:
        channel.send(error_message(exc, None))
        return
    channel.send({"op": "ready"})
    with torch.inference_mode():
        for message in channel:
            if message["op"] == "stop":
                return
            channel.send(_serve(runner, message, inputs, outputs))


def _serve(
    runner: Runner, message: Message, inputs: SharedBuffer, outputs: SharedBuffer
) -> Message:
    try:
        if message.get("threads"):
            torch.set_num_threads(message["threads"])
        batch = [
            [torch.from_numpy(inputs.view(TensorSpec.from_wire(s))) for s in group]
            for group in message["inputs"]
        ]
        start = time.monotonic()
        result = runner(batch)
        compute_s = time.monotonic() - start
        specs = outputs.write([[t.detach().contiguous().numpy() for t in g] for g in result])
    except Exception as exc:
        return error_message(exc, message["id"])
    return {
        "op": "result",
        "id": message["id"],
        "outputs": [[s.to_wire() for s in group] for group in specs],
        "compute_s": compute_s,
    }


def _warm_up(runner: Runner, spec: WorkerSpec) -> None:
    """The first TorchScript calls profile and optimise the graph; pay them before `ready`."""
    if not spec.example:
        return
    example = [torch.from_numpy(np.zeros(shape, dtype)) for shape, dtype in spec.example]
    for _ in range(spec.warmup_calls):
        runner([example])


def _exit_with_parent() -> None:
    """Die with the server, even after `kill -9`, so no worker is ever orphaned.

    The kernel signals us when our parent (the forkserver, which exits with the
    server) dies; a thread also watches the server's own sentinel pipe.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        multiprocessing.connection.wait([sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
