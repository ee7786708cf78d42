"""The demo model: a ResNet-18 shape classifier, trained here in about two minutes of CPU.

Usage::

    python -m examples.demo --out DIR [--quick] [--force]

Writes ``DIR/resnet18.pt`` (TorchScript: normalized ``[N, 3, 224, 224]`` -> logits
``[N, 5]``) and ``DIR/resnet18.labels.txt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from examples import classifier
from examples.training import cli

NAME = "resnet18"
build = partial(classifier.build, name=NAME)


def main(argv: Sequence[str] | None = None) -> None:
    cli(build, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
