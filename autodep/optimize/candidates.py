"""The candidates: each a name, what it needs to apply, and how to prepare and load the model.

A candidate is data. `prepare` and `load` name functions (``module:function``) so that the
list stays light (the server reads it without importing torch), is part of the cache key as
it is, and reaches the search child and the workers by reference:

- ``prepare(source, options, out) -> Path`` runs in the search child and writes the artifact
  into the directory ``out`` (see `autodep.optimize.source.Source`);
- ``load(artifact, options, context) -> model`` runs in each worker and returns something
  called like the model as given: ``model(*inputs)``.

A ``calibrated`` candidate's preparation sets its scales on calibration inputs
(`Source.calibration`), so the gate judges it only on samples that were not among them.

Adding a backend is adding its two functions and a line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autodep.optimize.cpu import Machine

Options = Mapping[str, Any]
AS_GIVEN = "as-given"


@dataclass(frozen=True)
class Target:
    """The model a search is about, and the machine it runs on."""

    path: str
    input: str  # image | tensor | text
    output: str  # classification | segmentation | detection | raw
    example: tuple[tuple[tuple[int, ...], str], ...]  # one request's (shape, dtype) inputs
    machine: Machine


@dataclass(frozen=True)
class Candidate:
    name: str
    prepare: str  # "module:function", see the module docstring
    load: str
    options: Options = field(default_factory=dict)
    needs: tuple[str, ...] = ()  # keys of NEEDS
    calibrated: bool = False  # prepared from calibration inputs (int8): gated on held-out ones
    # Its runtime fixes its threads when it loads (OpenVINO, ONNX Runtime): workers then load
    # a second form for lone batches (autodep.worker.main). Not in the key: no outcome changes.
    fixes_threads: bool = False

    def describe(self) -> dict[str, Any]:
        """What identifies the candidate in the cache key."""
        return {
            "name": self.name,
            "prepare": self.prepare,
            "load": self.load,
            "options": dict(self.options),
            "needs": list(self.needs),
            "calibrated": self.calibrated,
        }


def _native_bf16(target: Target) -> str | None:
    if target.machine.native_bf16:
        return None
    return "no native bf16 on this CPU (amx_bf16 / avx512_bf16): emulated bf16 is slower"


def _int8(target: Target) -> str | None:
    if target.input == "text":  # its generated calibration would repeat the gate's sentences
        return "int8 is calibrated for image and tensor models only"
    if target.machine.int8_paths:
        return None
    return "no int8 path on this CPU (amx_int8 / avx512_vnni / avx_vnni)"


# Each need: None when the target meets it, else the reason the candidate is skipped.
NEEDS: dict[str, Callable[[Target], str | None]] = {
    "torchscript": lambda t: None if t.path.endswith(".pt") else "needs a TorchScript .pt file",
    "stacked": lambda t: (
        "detection models take lists of images of any size" if t.output == "detection" else None
    ),
    "image_batch": lambda t: (
        None
        if t.input == "image" and len(t.example) == 1 and len(t.example[0][0]) == 3
        else "channels-last is for image batches"
    ),
    "native_bf16": _native_bf16,
    "int8": _int8,
}


def imported(reference: str) -> Any:
    """What a ``module:attribute`` reference names (a candidate's functions, a candidate list)."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


def applies(candidate: Candidate, target: Target) -> str | None:
    """None if the candidate applies to the target, else why not."""
    if candidate.name != AS_GIVEN and not target.example:
        return "the input shape is unknown (set input_shape for a tensor model)"
    for need in candidate.needs:
        reason = NEEDS[need](target)
        if reason is not None:
            return reason
    return None


_TS = "autodep.optimize.torchscript"
_OV = "autodep.optimize.openvino_backend"
_ORT = "autodep.optimize.onnxruntime_backend"
_INT8 = "autodep.optimize.quantize"


def _openvino(precision: str, hint: str) -> Candidate:
    needs = ("torchscript", "stacked") + (("native_bf16",) if precision == "bf16" else ())
    return Candidate(
        f"openvino-{precision}-{hint.lower()}",
        f"{_OV}:prepare",
        f"{_OV}:load",
        {"precision": precision, "hint": hint},
        needs,
        fixes_threads=True,
    )


_INT8_NEEDS = ("torchscript", "stacked", "int8")


def _openvino_int8(hint: str) -> Candidate:
    """The ops that NNCF leaves in float run in f32: bf16 there was not faster on the EPYC
    (roughly measured), and f32 keeps the gate's margin for the int8 error alone."""
    options = {"precision": "f32", "hint": hint}
    return Candidate(
        f"openvino-int8-{hint.lower()}",
        f"{_INT8}:openvino",
        f"{_OV}:load",
        options,
        _INT8_NEEDS,
        calibrated=True,
        fixes_threads=True,
    )


# Searched in this order (the model as given always first, as the gate's reference): the
# candidates that won most often on the CPUs measured so far come early, so that a search cut
# short by its budget has tried them.
CANDIDATES: tuple[Candidate, ...] = (
    Candidate(AS_GIVEN, "autodep.optimize.source:as_given", "autodep.optimize.source:load"),
    _openvino_int8("LATENCY"),
    _openvino("bf16", "LATENCY"),
    _openvino("f32", "LATENCY"),
    Candidate(
        "bf16-channels-last",
        f"{_TS}:prepare",
        f"{_TS}:load",
        {"dtype": "bfloat16", "channels_last": True},
        ("torchscript", "stacked", "image_batch", "native_bf16"),
    ),
    Candidate(
        "onnxruntime",
        f"{_ORT}:prepare",
        f"{_ORT}:load",
        {},
        ("torchscript", "stacked"),
        fixes_threads=True,
    ),
    Candidate(
        "torchscript-frozen",
        f"{_TS}:prepare",
        f"{_TS}:load",
        {"dtype": "float32", "channels_last": False},
        ("torchscript",),
    ),
    Candidate(
        "channels-last",
        f"{_TS}:prepare",
        f"{_TS}:load",
        {"dtype": "float32", "channels_last": True},
        ("torchscript", "stacked", "image_batch"),
    ),
    _openvino_int8("THROUGHPUT"),
    Candidate(
        "onnxruntime-int8",
        f"{_INT8}:onnxruntime",
        f"{_ORT}:load",
        {},
        _INT8_NEEDS,
        calibrated=True,
        fixes_threads=True,
    ),
    _openvino("bf16", "THROUGHPUT"),
    _openvino("f32", "THROUGHPUT"),
)
NAMES = tuple(c.name for c in CANDIDATES)


def without_int8(candidates: Sequence[Candidate]) -> tuple[Candidate, ...]:
    """The candidates less the int8 ones (`optimize.int8` off)."""
    return tuple(c for c in candidates if "int8" not in c.needs)


def restricted(candidates: Sequence[Candidate], name: str) -> tuple[Candidate, ...]:
    """The model as given (the gate's reference) and the one candidate called ``name``."""
    return tuple(c for c in candidates if c.name in (AS_GIVEN, name))
