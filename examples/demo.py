"""The demo model: a ResNet-18 shape classifier, trained here in a minute or two of CPU.

Usage::

    python -m examples.demo --out DIR [--quick] [--force]

Writes ``DIR/resnet18.pt`` (TorchScript: normalized ``[N, 3, 224, 224]`` -> logits
``[N, 5]``) and ``DIR/resnet18.labels.txt``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from examples import classifier
from examples.classifier import Recipe, evaluate

__all__ = ["NAME", "build", "evaluate", "main"]

NAME = "resnet18"
FULL = Recipe("resnet18", resolution=112, batch=48, steps=200, seconds=110, lr=2e-3)
QUICK = Recipe("resnet18", resolution=64, batch=32, steps=100, seconds=25, lr=2e-3)


def build(out: Path, quick: bool = False, force: bool = False) -> dict:
    """Train and export the model into ``out`` (skipped if present) and return its config."""
    return classifier.build(out, NAME, QUICK if quick else FULL, force)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="smaller, faster build for tests")
    parser.add_argument("--force", action="store_true", help="rebuild even if the files exist")
    args = parser.parse_args(argv)
    build(args.out, quick=args.quick, force=args.force)


if __name__ == "__main__":
    main()
