"""How a worker (or the optimizer's search child) loads a model: one place (imports torch).

load_model(path)            a TorchScript file, or a `torch.export` program (`.pt2`)
load_model(path, variant)   the optimized variant (autodep.optimize): its candidate's
                            loader, called with a `LoadContext`
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from autodep.optimize.candidates import imported
from autodep.worker.pt2 import load_exported
from autodep.worker.spec import VariantSpec


@dataclass(frozen=True)
class LoadContext:
    """What a worker knows when it loads a variant."""

    threads: int  # for runtimes that fix their threads when they load (OpenVINO, ONNX Runtime)
    cache_dir: Path  # the search's cache entry: room for runtime caches (OpenVINO's model cache)


def load_model(
    path: str, variant: VariantSpec | None = None, *, trust_pickles: bool = False
) -> Any:
    """A TorchScript file, or a `torch.export` program (`.pt2`); or the optimized `variant`.

    A `.pt2` whose archive carries pickled objects loads only if `trust_pickles`
    (autodep.worker.pt2). Either kind of file is code all the same: TorchScript runs
    what its author wrote, so only the operator chooses which files may load.
    """
    if variant is not None:
        return load_variant(variant)
    if Path(path).suffix == ".pt2":
        return load_exported(path, trust_pickles)
    with warnings.catch_warnings():  # "torch.jit.load is deprecated": TorchScript is the input
        warnings.simplefilter("ignore", FutureWarning)
        model = torch.jit.load(path, map_location="cpu")  # type: ignore[no-untyped-call]
    model.eval()
    return model


def load_variant(variant: VariantSpec) -> Any:
    """An optimized variant, by its candidate's loader (e.g. `autodep.optimize.source:load`)."""
    context = LoadContext(variant.threads, Path(variant.cache_dir))
    return imported(variant.load)(Path(variant.artifact), dict(variant.options), context)
