"""Entry point of a worker process.

Started from the forkserver, which has already imported torch and torchvision,
so a new worker pays only for loading its model and warming it up. It reports
`ready` on its socket, then serves `run` messages one batch at a time until
told to stop, until the server closes the socket, or until the server dies.

The worker owns a set of cores (`spec.cores`, see autodep.pool.cores) and pins itself to it
before any thread exists; each batch says where it runs (its own cores under load, all the
pool's cores when it is alone), and the worker moves every thread there. Runtimes that fix
their threads when they load (OpenVINO, ONNX Runtime) load a second form with the pool's
thread count, compiled while the worker's mask spans the pool (OpenVINO caps its threads to the
mask it sees when it loads), and a lone batch runs on that form.

Why a second form: OpenVINO streams serve several requests at once, not one request on more
cores, and these runtimes cannot be handed more threads without compiling again. Measured
roughly (resnet18 at 224, OpenVINO f32, 2 workers; a shared 2-core EPYC with a load average
of ~10, so the figures are rough): the second form costs ~100 MiB more per worker (550 -> 650
MiB RSS) and ~1.2 s more per worker start (1.6 -> 2.8 s: a second compile, or model-cache
read, and its warm-up). Its gain could not be measured on that machine (in-process, 2 threads
were no faster than 1 under that load); on a quiet machine a lone request on 2 cores took
12.6 ms instead of 19.6 ms (issue 18, OpenVINO bf16, resnet50) and 51 ms instead of 90 ms
(DESIGN.md, torch).
Moving a batch reads every thread's mask (and sets those that differ): ~0.15 ms a batch with
14 threads on the loaded machine.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torchvision  # noqa: F401  (registers torchvision ops used by detection models)

from autodep.codecs import DECODERS
from autodep.codecs.base import Decoded, Decoder, Payload
from autodep.errors import AutodepError
from autodep.pool import items
from autodep.pool.items import Item
from autodep.pool.messages import BlockingChannel, Message, error_message
from autodep.pool.shm import SharedBuffer
from autodep.worker import affinity
from autodep.worker.loading import load_model
from autodep.worker.runners import Runner, make_runner
from autodep.worker.spec import VariantSpec, WorkerSpec

_PR_SET_PDEATHSIG = 1
MAX_REASON = 300  # characters of a model's exception that a client is told


def run_worker(
    spec: WorkerSpec, sock: socket.socket, inputs: SharedBuffer, outputs: SharedBuffer
) -> None:
    affinity.pin(spec.cores)  # first: every thread made from here on inherits the mask
    _exit_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = BlockingChannel(sock)
    torch.set_num_threads(spec.threads)
    try:
        decoder = DECODERS[spec.config.input](spec.config)
        with torch.inference_mode():
            runner, wide = _load(spec)
    except Exception as exc:
        channel.send(error_message(exc, None))
        return
    channel.send({"op": "ready"})
    serve = _Server(runner, wide, decoder, inputs, outputs, spec)
    with torch.inference_mode():
        for message in channel:
            if message["op"] == "stop":
                return
            channel.send(serve(message))


def _load(spec: WorkerSpec) -> tuple[Runner, Runner | None]:
    """The model's runner, and its wide form (None unless the variant fixes threads at load);
    both warmed up."""
    variant = spec.variant
    wide: Runner | None = None
    if variant is not None and variant.wide_threads > variant.threads:
        affinity.pin(spec.pool_cores)  # OpenVINO gives a model no more threads than the mask
        wide_variant = replace(variant, threads=variant.wide_threads)
        wide = make_runner(_model(spec, wide_variant), spec.input, spec.output)
    runner = make_runner(_model(spec, variant), spec.input, spec.output)
    # Warm up on the worker's own cores: a runtime's threads made now keep that mask (and
    # OpenVINO's put it back when they leave a batch).
    affinity.pin(spec.cores)
    for form in (runner, wide):
        if form is not None:
            _warm_up(form, spec)
    return runner, wide


def _model(spec: WorkerSpec, variant: VariantSpec | None) -> Any:
    return load_model(spec.path, variant, trust_pickles=spec.trust_pickles)


class _Server:
    """Runs one batch: decode its payloads, call the model, write the outputs back."""

    def __init__(
        self,
        runner: Runner,
        wide: Runner | None,
        decoder: Decoder,
        inputs: SharedBuffer,
        outputs: SharedBuffer,
        spec: WorkerSpec,
    ) -> None:
        self._runner = runner
        self._wide = wide  # for batches given more threads than the runner was loaded with
        self._loaded_threads = spec.variant.threads if spec.variant is not None else spec.threads
        self._decoder = decoder
        self._inputs = inputs
        self._outputs = outputs
        self._threads = spec.threads
        self._own = spec.cores
        # PIL and numpy release the GIL, so a batch's images decode side by side.
        self._decoding = ThreadPoolExecutor(
            max_workers=len(os.sched_getaffinity(0)), thread_name_prefix="decode"
        )

    def __call__(self, message: Message) -> Message:
        try:
            threads = message.get("threads") or self._threads
            if threads != self._threads:  # set only on change: the call is not free
                torch.set_num_threads(threads)
                self._threads = threads
            self._move(tuple(message.get("cores") or self._own))
            runner = self._runner
            if self._wide is not None and threads > self._loaded_threads:
                runner = self._wide
            began = time.monotonic()
            requests = [items.from_wire(wire, self._inputs) for wire in message["inputs"]]
            if len(requests) > 1 and any(isinstance(r, Payload) for r in requests):
                decoded = list(self._decoding.map(self._decode, requests))
            else:
                decoded = [self._decode(r) for r in requests]
            decode_s = time.monotonic() - began
            ran = iter(_run(runner, [d for d in decoded if isinstance(d, Decoded)]))
            # Per request: its output tensors, or the (status, message) of why it has none.
            answered = [next(ran) if isinstance(d, Decoded) else d for d in decoded]
            compute_s = time.monotonic() - began - decode_s
            results = [
                [t.detach().contiguous().numpy() for t in r]
                for r in answered
                if isinstance(r, list)
            ]
            specs = iter(self._outputs.write(results, slot=message["id"]))
        except Exception as exc:
            return error_message(exc, message["id"])
        answers = [
            {"tensors": [s.to_wire() for s in next(specs)], "meta": d.meta}
            if isinstance(d, Decoded) and isinstance(r, list)
            else {"error": r}
            for d, r in zip(decoded, answered, strict=True)
        ]
        return {
            "op": "result",
            "id": message["id"],
            "outputs": answers,
            "compute_s": compute_s,
            "decode_s": decode_s,
        }

    def _move(self, cores: tuple[int, ...]) -> None:
        """Pin every thread to the batch's cores, also those a runtime made or moved since the
        last batch (a few microseconds a thread: it reads each mask)."""
        affinity.pin(cores)

    def _decode(self, request: Item) -> Decoded | tuple[int, str]:
        """A request's model inputs, or the (status, message) of why it has none."""
        if not isinstance(request, Payload):
            return Decoded(list(request))
        try:
            return self._decoder.decode(request)
        except AutodepError as exc:
            return exc.status, exc.message
        except Exception as exc:  # a decoder bug: this request fails, the batch goes on
            return 500, f"decoding failed: {type(exc).__name__}: {exc}"


def _run(runner: Runner, batch: list[Decoded]) -> list[list[torch.Tensor] | tuple[int, str]]:
    """Each item's outputs, or the (status, message) of why the model refused it.

    When the model fails on a batch, each item is run again alone: an input it
    cannot take (a wrong shape for a tensor model without `input_shape`) then
    fails by itself, and the others of its batch are answered.
    """
    inputs = [[torch.from_numpy(t) for t in d.tensors] for d in batch]
    if not inputs:
        return []
    try:
        return list(runner(inputs))
    except Exception as exc:
        if len(inputs) == 1:
            return [_refused(exc)]
    answers: list[list[torch.Tensor] | tuple[int, str]] = []
    for item in inputs:
        try:
            answers.extend(runner([item]))
        except Exception as exc:
            answers.append(_refused(exc))
    return answers


def _refused(exc: Exception) -> tuple[int, str]:
    """A model's exception on one input alone: a 400 naming what went wrong.

    Only the exception's last line travels: a TorchScript error's earlier lines
    quote the model's source and its author's file paths.
    """
    lines = [line for line in str(exc).splitlines() if line.strip()]
    last = lines[-1].strip() if lines else type(exc).__name__
    if len(last) > MAX_REASON:
        last = last[: MAX_REASON - 3] + "..."
    return 400, f"the model could not run on this input ({last}); check its shape and type"


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
