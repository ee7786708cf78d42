"""ONNX Runtime, CPU execution provider, from the ONNX export of the model.

Like OpenVINO, a session fixes its threads when it is made: a worker uses the threads it
starts with (`LoadContext.threads`), and a second session with the pool's threads serves lone
batches (autodep.worker.main).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import onnxruntime as ort
import torch

from autodep.optimize.candidates import Options
from autodep.optimize.source import Source
from autodep.worker.loading import LoadContext


def prepare(source: Source, options: Options, out: Path) -> Path:
    path = out / "model.onnx"
    shutil.copyfile(source.onnx(), path)
    return path


class OnnxRuntimeModel:
    """Called like the torch model: tensors in, a tensor (or a tuple of them) out."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session
        self._inputs = [i.name for i in session.get_inputs()]

    def __call__(self, *inputs: torch.Tensor) -> Any:
        feed = {name: t.contiguous().numpy() for name, t in zip(self._inputs, inputs, strict=True)}
        tensors = tuple(torch.from_numpy(out) for out in self._session.run(None, feed))
        return tensors[0] if len(tensors) == 1 else tensors


def load(artifact: Path, options: Options, context: LoadContext) -> OnnxRuntimeModel:
    settings = ort.SessionOptions()
    # Given explicitly, the count also keeps ONNX Runtime from pinning its intra-op threads
    # (it pins them only when it picks the count itself): they stay in the worker's cores.
    settings.intra_op_num_threads = context.threads
    settings.inter_op_num_threads = 1
    session = ort.InferenceSession(str(artifact), settings, providers=["CPUExecutionProvider"])
    return OnnxRuntimeModel(session)
