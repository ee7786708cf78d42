"""What a worker needs to know to start: small, picklable, no tensors."""

from __future__ import annotations

from dataclasses import dataclass

from autodep.config import ModelConfig


@dataclass(frozen=True)
class WorkerSpec:
    model: str
    path: str
    input: str  # image | tensor | text
    output: str  # classification | segmentation | detection | raw
    threads: int
    config: ModelConfig  # the worker builds the model's decoder from it
    # One request's tensors for warm-up, as (shape, dtype) pairs; empty: no warm-up.
    example: tuple[tuple[tuple[int, ...], str], ...] = ()
    warmup_calls: int = 3

    @classmethod
    def of(
        cls, model: ModelConfig, threads: int, example: tuple[tuple[tuple[int, ...], str], ...]
    ) -> WorkerSpec:
        return cls(
            model=model.name,
            path=str(model.path),
            input=model.input,
            output=model.output,
            threads=threads,
            config=model,
            example=example,
        )
