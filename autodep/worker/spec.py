"""What a worker needs to know to start: small, picklable, no tensors."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerSpec:
    model: str
    path: str
    input: str  # image | tensor | text
    output: str  # classification | segmentation | detection | raw
    threads: int
    # One request's tensors for warm-up, as (shape, dtype) pairs; empty: no warm-up.
    example: tuple[tuple[tuple[int, ...], str], ...] = ()
    warmup_calls: int = 3
