"""The measurer: images (requests) per second of one runner at one batch size.

It runs in the search child with the torch threads the workers start with, through the same
runner a worker uses (stacking, the model, softmax/argmax), on inputs of the served shape.
The figure is the batch size over the median call time: on a shared machine, the median
shrugs off the calls another process interrupted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch

from autodep.worker.runners import Runner

WARMUP_CALLS = 3  # the first TorchScript calls profile and optimize the graph
MIN_CALLS = 5


def throughput(
    runner: Runner, request: Sequence[torch.Tensor], batch: int, seconds: float
) -> float:
    """Requests per second at ``batch`` requests per call, timed for about ``seconds``."""
    calls = [request] * batch
    for _ in range(WARMUP_CALLS):
        runner(calls)
    times: list[float] = []
    started = time.monotonic()
    while len(times) < MIN_CALLS or time.monotonic() - started < seconds:
        start = time.perf_counter()
        runner(calls)
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)
