"""How a batch of requests becomes one model call, by model kind.

A runner takes one list of tensors per request and returns one list of output
tensors per request. It does the cheap tensor work that belongs next to the
model (softmax, argmax) so that less data travels back.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from autodep.worker.pt2 import load_exported
from autodep.worker.spec import VariantSpec

Batch = Sequence[Sequence[torch.Tensor]]
Outputs = list[list[torch.Tensor]]
Runner = Callable[[Batch], Outputs]


def load_model(
    path: str, variant: VariantSpec | None = None, *, trust_pickles: bool = False
) -> Any:
    """A TorchScript file, or a `torch.export` program (`.pt2`); or the optimized `variant`.

    A `.pt2` whose archive carries pickled objects loads only if `trust_pickles`
    (autodep.worker.pt2). Either kind of file is code all the same: TorchScript runs
    what its author wrote, so only the operator chooses which files may load.
    """
    if variant is not None:
        return _load_variant(variant)
    if Path(path).suffix == ".pt2":
        return load_exported(path, trust_pickles)
    with warnings.catch_warnings():  # "torch.jit.load is deprecated": TorchScript is the input
        warnings.simplefilter("ignore", FutureWarning)
        model = torch.jit.load(path, map_location="cpu")  # type: ignore[no-untyped-call]
    model.eval()
    return model


def _load_variant(variant: VariantSpec) -> Any:
    from autodep.optimize.candidates import imported
    from autodep.optimize.source import LoadContext

    context = LoadContext(variant.threads, Path(variant.cache_dir))
    return imported(variant.load)(Path(variant.artifact), dict(variant.options), context)


def make_runner(model: Any, input_kind: str, output_kind: str) -> Runner:
    if output_kind == "detection":
        return _detection_runner(model)
    post = _POSTPROCESS[output_kind]

    def run(batch: Batch) -> Outputs:
        if _same_shapes(batch):
            stacked = [torch.stack(column) for column in zip(*batch, strict=True)]
            return _split(post(_primary(model(*stacked))))
        # Inputs of different sizes (no resize configured): one call each.
        return [out for request in batch for out in run([request])]

    return run


def _same_shapes(batch: Batch) -> bool:
    first = [t.shape for t in batch[0]]
    return all([t.shape for t in request] == first for request in batch[1:])


def _primary(output: Any) -> torch.Tensor:
    """The main tensor of a model's output (torchvision segmentation returns a dict)."""
    if isinstance(output, dict):
        return _primary(output["out"] if "out" in output else next(iter(output.values())))
    if isinstance(output, (tuple, list)):
        return _primary(output[0])
    tensor: torch.Tensor = output
    return tensor


def _split(output: torch.Tensor) -> Outputs:
    return [[row] for row in output.unbind(0)]


_POSTPROCESS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "classification": lambda logits: torch.softmax(logits.float(), dim=1),
    "segmentation": lambda logits: logits.argmax(dim=1).to(torch.uint8),
    "raw": lambda output: output,
}


def _detection_runner(model: Any) -> Runner:
    """torchvision detection models take a list of images and return one dict per image."""

    def run(batch: Batch) -> Outputs:
        output = model([request[0] for request in batch])
        if isinstance(output, tuple):  # scripted torchvision models return (losses, detections)
            output = output[1]
        return [[d["boxes"], d["labels"], d["scores"]] for d in output]

    return run
