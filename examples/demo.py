"""The demo model: a ResNet-18 shape classifier, trained here in about two minutes of CPU.

Usage::

    python -m examples.demo --out DIR [--quick] [--force]

Writes ``DIR/resnet18.pt`` (TorchScript, the plain torchvision ResNet-18: normalized
``[N, 3, 48, 48]`` -> logits ``[N, 5]``), ``DIR/resnet18.labels.txt`` and ``DIR/demo.yaml``,
the config that serves it (``make serve``): pictures resized to the 48x48 it was trained at.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from examples import classifier
from examples.training import cli, write_config

NAME = "resnet18"


def build(out: Path, quick: bool = False, force: bool = False) -> dict:
    """Train the ResNet-18 into ``out`` (skipped if present) and write ``out/demo.yaml``."""
    entry = classifier.build(out, quick=quick, force=force, name=NAME)
    write_config(out / "demo.yaml", [entry])
    return entry


def main(argv: Sequence[str] | None = None) -> None:
    cli(build, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
