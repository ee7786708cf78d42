"""What a worker needs to know to start: small, picklable, no tensors."""

from __future__ import annotations

from dataclasses import dataclass

from autodep.config import ModelConfig


@dataclass(frozen=True)
class VariantSpec:
    """The optimized form of the model a worker loads instead of the file (autodep.optimize)."""

    name: str
    load: str  # "module:function" called as load(artifact, options, LoadContext)
    artifact: str
    options: tuple[tuple[str, str | int | float | bool], ...]
    threads: int  # for runtimes that fix their threads at load (OpenVINO, ONNX Runtime)
    cache_dir: str  # the search's cache entry (OpenVINO's model cache lives there)
    # Such runtimes load a second form with this many threads for lone batches on all the
    # pool's cores (see autodep.worker.main); 0: the variant adapts its threads per batch.
    wide_threads: int = 0


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
    variant: VariantSpec | None = None  # None: the model file as given
    cores: tuple[int, ...] = ()  # the cores this worker owns (set per worker); empty: no pinning
    pool_cores: tuple[int, ...] = ()  # all the cores of its pool: where lone batches run
    trust_pickles: bool = False  # load a .pt2 whose archive holds pickles (--trust-pt2-pickles)

    @classmethod
    def of(
        cls,
        model: ModelConfig,
        threads: int,
        example: tuple[tuple[tuple[int, ...], str], ...],
        variant: VariantSpec | None = None,
        trust_pickles: bool = False,
    ) -> WorkerSpec:
        return cls(
            model=model.name,
            path=str(model.path),
            input=model.input,
            output=model.output,
            threads=threads,
            config=model,
            example=example,
            variant=variant,
            trust_pickles=trust_pickles,
        )
