"""The demo model: a ResNet-18 shape classifier, trained here in a minute or two of CPU.

Usage::

    python -m examples.demo --out DIR [--quick] [--force]

Writes ``DIR/resnet18.pt`` (TorchScript: normalized ``[N, 3, 224, 224]`` -> logits
``[N, 5]``) and ``DIR/resnet18.labels.txt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from examples import classifier
from examples.classifier import Recipe, evaluate
from examples.training import cli

__all__ = ["NAME", "build", "evaluate", "main"]

NAME = "resnet18"
# `seconds` only guards against a machine far slower than this one: a quiet run
# finishes its 700 steps in under 300 s, and a cap hit early starves the training.
FULL = Recipe("resnet18", resolution=64, batch=32, steps=700, seconds=1500, lr=3e-3)
QUICK = Recipe("resnet18", resolution=64, batch=32, steps=100, seconds=25, lr=2e-3)


def build(out: Path, quick: bool = False, force: bool = False) -> dict:
    """Train and export the model into ``out`` (skipped if present) and return its config."""
    return classifier.build(out, NAME, QUICK if quick else FULL, force)


def main(argv: Sequence[str] | None = None) -> None:
    cli(build, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
