"""int8 variants: post-training static quantization, calibrated on inputs the gate never sees.

- OpenVINO: NNCF's `nncf.quantize` of the IR (symmetric int8 weights and activations, per the
  CPU plug-in's rules), saved as IR; compiled by the OpenVINO backend's `load`.
- ONNX Runtime: `onnxruntime.quantization.quantize_static` of the ONNX export, QDQ format,
  per-channel int8 weights and uint8 activations, after `quant_pre_process` (without it the
  quantized model ran about 4x slower here: the biases were not recognized as constants).

Both calibrate on `Source.calibration()` (at most `samples.CALIBRATION_INPUTS` requests, so
that the preparation fits the search's budget); the artifact lands in the search's cache entry,
so the workers and the next start load it without calibrating again. Search child only.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from pathlib import Path

import nncf
import numpy as np
import openvino as ov
from onnxruntime import quantization

from autodep.optimize.candidates import Options
from autodep.optimize.source import Source


def openvino(source: Source, options: Options, out: Path) -> Path:
    """The quantized IR, shared by the OpenVINO int8 candidates (they differ in its compile)."""
    return _quantized_ir(source)


@functools.cache  # once per search: one Source per search
def _quantized_ir(source: Source) -> Path:
    nncf.set_log_level(logging.WARNING)
    inputs = source.calibration()
    quantized = nncf.quantize(
        ov.Core().read_model(str(source.openvino())),
        nncf.Dataset(inputs, list),
        subset_size=len(inputs),
        target_device=nncf.TargetDevice.CPU,
    )
    path = source.work / "model-int8.xml"
    ov.save_model(quantized, str(path), compress_to_fp16=False)
    return path


class _Calibration(quantization.CalibrationDataReader):  # type: ignore[misc]
    """ONNX Runtime's calibrator reads the inputs one feed (name -> array) at a time."""

    def __init__(self, names: list[str], inputs: list[tuple[np.ndarray, ...]]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = (
            dict(zip(names, request, strict=True)) for request in inputs
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def onnxruntime(source: Source, options: Options, out: Path) -> Path:
    prepared, path = out / "prepared.onnx", out / "model.onnx"
    quantization.quant_pre_process(str(source.onnx()), str(prepared))
    quantization.quantize_static(
        str(prepared),
        str(path),
        _Calibration(source.input_names(), source.calibration()),
        quant_format=quantization.QuantFormat.QDQ,
        per_channel=True,
        activation_type=quantization.QuantType.QUInt8,
        weight_type=quantization.QuantType.QInt8,
    )
    prepared.unlink()
    return path
