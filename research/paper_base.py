"""The report's building blocks: a `Section` measures, saves and renders one part.

Add a section by registering one (see research/paper_sections.py):

    register(Section("name", "Title", measure, render, module="bench.name", how="..."))

`measure(ctx) -> dict` runs the bench and returns JSON-able results (saved by
research.paper, so `--reuse` can render them again); `render(ctx, results) -> Part`
writes its figures with `ctx.figure(...)` and returns Markdown and goals.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import make_jpeg, make_resnet18

CORES = len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Goal:
    """A target a section checks: `met` None means informational."""

    what: str
    measured: str
    met: bool | None
    why: str = ""  # when missed: what the measurements say about the reason


@dataclass
class Part:
    """A section's Markdown (without its heading) and its goals."""

    lines: list[str]
    goals: list[Goal] = field(default_factory=list)


@dataclass
class Context:
    """What the sections share: where to write, how long to run, the inputs."""

    out: Path
    quick: bool
    work: Path  # scratch space (models, logs), deleted at the end
    jpeg: bytes = field(default_factory=make_jpeg)
    _model: Path | None = None

    def model(self) -> Path:
        """torchvision's resnet18 (untrained) as TorchScript, made once."""
        if self._model is None:
            self._model = make_resnet18(self.work)
        return self._model

    def figure(self, name: str) -> Path:
        return self.out / name


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    measure: Callable[[Context], dict[str, Any]]
    render: Callable[[Context, dict[str, Any]], Part]
    module: str | None = None  # a bench module it needs; without it: "not measured"
    how: str = ""  # one line for the method section: what is timed against what


SECTIONS: list[Section] = []


def register(section: Section) -> Section:
    SECTIONS.append(section)
    return section


# -- for the sections' text --------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def span(values: set[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def load_note(why: str) -> str:
    """A reason that is the shared machine's as much as the code's."""
    return f"{why}; other jobs shared the {CORES} cores (the load averages in section 3)."
