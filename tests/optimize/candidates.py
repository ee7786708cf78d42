"""Candidates for the optimizer's tests: one that changes the answers, one that fails; a short
list of int8 and float candidates.

The search child imports this module by name (`tests.optimize.candidates:WITH_BROKEN`), so it
stays free of test fixtures.
"""

from __future__ import annotations

from pathlib import Path

import torch

from autodep.optimize.candidates import AS_GIVEN, CANDIDATES, Candidate
from autodep.optimize.source import Source

HERE = "tests.optimize.candidates"


class _Reversed(torch.nn.Module):
    """The model with its classes in reverse order: same speed, other answers."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.net(x)
        return logits.flip(1)


def prepare_reversed(source: Source, options: dict, out: Path) -> Path:
    path = out / "model.pt"
    torch.jit.script(_Reversed(source.module())).save(str(path))
    return path


def prepare_failing(source: Source, options: dict, out: Path) -> Path:
    raise RuntimeError("this converter cannot take the model")


WITH_BROKEN = (
    next(c for c in CANDIDATES if c.name == AS_GIVEN),
    Candidate("reversed", f"{HERE}:prepare_reversed", "autodep.optimize.source:load"),
    Candidate("failing", f"{HERE}:prepare_failing", "autodep.optimize.source:load"),
)

# The int8 candidates and two float ones to fall back on: a short search for the int8 tests.
INT8_AND_FLOAT = tuple(
    c
    for c in CANDIDATES
    if c.name
    in (
        AS_GIVEN,
        "openvino-int8-latency",
        "onnxruntime-int8",
        "openvino-f32-latency",
        "onnxruntime",
    )
)
