"""OpenVINO on the CPU: the model converted once (from ONNX) to OpenVINO IR, compiled per worker.

Compilation happens in the worker (never in the forkserver), with OpenVINO's model cache in
the search's cache entry: the search compiles each variant once with the very settings the
workers use, so a worker's compile is a cache read. The precision is always set: on CPUs with
AMX, OpenVINO would otherwise switch to bf16 silently, without the accuracy gate.

Threads: OpenVINO fixes its threads when it compiles, so a worker compiles with the threads it
starts with (its share of the cores when every worker runs, `LoadContext.threads`), instead of
adapting them per batch as the torch variants do; a second form with the pool's threads serves
lone batches (autodep.worker.main). Pinning is off (`ENABLE_CPU_PINNING`): OpenVINO would pin
each process's threads from CPU 0 on, so two 1-thread workers both ran on CPU 0; the worker's
affinity mask (its own cores, autodep.pool.cores) keeps the threads where they belong instead.
OpenVINO 2026 reads that mask and gives a compiled model no more threads than it holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openvino as ov
import torch

from autodep.optimize.candidates import Options
from autodep.optimize.source import Source
from autodep.worker.loading import LoadContext


def prepare(source: Source, options: Options, out: Path) -> Path:
    """The IR, shared by the OpenVINO candidates: they differ in how it is compiled."""
    return source.openvino()


class OpenVinoModel:
    """Called like the torch model: tensors in, a tensor (or a tuple of them) out."""

    def __init__(self, compiled: ov.CompiledModel) -> None:
        self._request = compiled.create_infer_request()
        self._outputs = compiled.outputs

    def __call__(self, *inputs: torch.Tensor) -> Any:
        results = self._request.infer([t.contiguous().numpy() for t in inputs])
        tensors = tuple(torch.from_numpy(results[output]) for output in self._outputs)
        return tensors[0] if len(tensors) == 1 else tensors


def load(artifact: Path, options: Options, context: LoadContext) -> OpenVinoModel:
    core = ov.Core()
    core.set_property({"CACHE_DIR": str(context.cache_dir / "openvino-cache")})
    config = {
        "PERFORMANCE_HINT": options["hint"],
        "INFERENCE_PRECISION_HINT": options["precision"],
        "INFERENCE_NUM_THREADS": context.threads,
        "ENABLE_CPU_PINNING": False,
    }
    return OpenVinoModel(core.compile_model(str(artifact), "CPU", config))
