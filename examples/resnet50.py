"""A ResNet-50 shape classifier: like the ResNet-18 demo, heavier.

Usage::

    python -m examples.resnet50 --out DIR [--quick] [--force]

Writes ``DIR/resnet50.pt`` (TorchScript: normalized ``[N, 3, 224, 224]`` -> logits
``[N, 5]``) and ``DIR/resnet50.labels.txt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from examples import classifier
from examples.classifier import Recipe, evaluate
from examples.training import cli

__all__ = ["NAME", "build", "evaluate", "main"]

NAME = "resnet50"
FULL = Recipe("resnet50", resolution=80, batch=32, steps=400, seconds=400, lr=2e-3)
QUICK = Recipe("resnet50", resolution=64, batch=16, steps=60, seconds=30, lr=2e-3)


def build(out: Path, quick: bool = False, force: bool = False) -> dict:
    """Train and export the model into ``out`` (skipped if present) and return its config."""
    return classifier.build(out, NAME, QUICK if quick else FULL, force)


def main(argv: Sequence[str] | None = None) -> None:
    cli(build, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
