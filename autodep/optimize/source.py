"""The model as given, as the candidates' preparations see it (search child only: imports torch).

`Source` loads fresh copies of the model file, makes example inputs of the served shapes,
exports the model to ONNX once per search for the backends that start from ONNX, and hands
calibrated (int8) candidates their calibration inputs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autodep.optimize.candidates import Options
from autodep.worker.loading import LoadContext, load_model


class MainOutput(torch.nn.Module):
    """A model of one tensor returning a dict, returning only the tensor under ``key``."""

    def __init__(self, net: torch.nn.Module, key: str) -> None:
        super().__init__()
        self.net = net
        self.key = key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: dict[str, torch.Tensor] = self.net(x)
        return outputs[self.key]


class Source:
    def __init__(
        self,
        path: Path,
        example: tuple[tuple[tuple[int, ...], str], ...],
        work: Path,
        calibration: Callable[[], Sequence[Sequence[np.ndarray]]] | None = None,
    ):
        self.path = path
        self.example = example
        self.work = work
        self._calibration = calibration  # made when a calibrated candidate first asks
        self._onnx: Path | None = None
        self._openvino: Path | None = None

    def module(self) -> Any:
        """A fresh copy of the model as given (preparations may change it in place)."""
        return load_model(str(self.path))

    def inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        """Example inputs of the served shapes, with a batch dimension."""
        generator = torch.Generator().manual_seed(0)
        tensors = []
        for shape, dtype in self.example:
            if np.dtype(dtype).kind == "f":
                tensors.append(torch.randn((batch, *shape), generator=generator))
            else:  # token ids and masks: ones are valid for both
                tensors.append(torch.ones((batch, *shape), dtype=getattr(torch, dtype)))
        return tuple(tensors)

    def calibration(self) -> list[tuple[np.ndarray, ...]]:
        """Inputs to calibrate int8 scales on, one request each (batch dimension 1); none of
        them is a sample the gate judges the calibrated candidate on (see `samples`)."""
        if self._calibration is None:
            raise RuntimeError("this search has no calibration inputs")
        return [tuple(t[None] for t in sample) for sample in self._calibration()]

    def input_names(self) -> list[str]:
        """The inputs' names in the ONNX export (and the OpenVINO IR made from it)."""
        return [f"input{i}" for i in range(len(self.example))]

    def main_key(self) -> str | None:
        """The key of the main output if the model returns a dict (torchvision segmentation:
        "out"), else None."""
        with torch.inference_mode():
            output = self.module()(*self.inputs(1))
        if not isinstance(output, dict):
            return None
        return "out" if "out" in output else str(next(iter(output)))

    def onnx(self) -> Path:
        """The model exported to ONNX with a dynamic batch dimension (once per search).

        A model returning a dict is exported returning its main tensor (as the runner takes
        it): the exporter cannot build dicts."""
        if self._onnx is None:
            path = self.work / "model.onnx"
            inputs = self.inputs()
            names = self.input_names()
            module = self.module()
            with warnings.catch_warnings():  # the TorchScript exporter announces its retirement
                warnings.simplefilter("ignore")
                key = self.main_key()
                if key is not None:  # frozen, the dict is gone from the graph
                    module = torch.jit.freeze(torch.jit.script(MainOutput(module, key).eval()))
                torch.onnx.export(
                    module,
                    inputs,
                    str(path),
                    input_names=names,
                    dynamic_axes={name: {0: "batch"} for name in names},
                    dynamo=False,
                )
            self._onnx = path
        return self._onnx

    def openvino(self) -> Path:
        """The ONNX export converted to OpenVINO IR (once per search; compiled per candidate)."""
        if self._openvino is None:
            import openvino as ov

            path = self.work / "model.xml"
            ov.save_model(ov.convert_model(str(self.onnx())), str(path), compress_to_fp16=False)
            self._openvino = path
        return self._openvino


def as_given(source: Source, options: Options, out: Path) -> Path:
    """Nothing to prepare: the artifact is the model file itself."""
    return source.path


def load(artifact: Path, options: Options, context: LoadContext) -> Any:
    return load_model(str(artifact))
