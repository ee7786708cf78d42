"""Build every example model and write the server's ``models.yaml``.

Usage::

    python -m examples.build --out DIR [--quick] [--force] [--only NAME ...]

Each model is trained here on generated data (nothing is downloaded) and cached: existing
outputs are reused unless ``--force``.  ``models.yaml`` lists the models built by this run
(all five unless ``--only``), with paths relative to ``DIR``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from examples import demo, detection, resnet50, segmentation, text_model

# In build order: fasterrcnn starts from deeplabv3's backbone.
BUILDERS: dict[str, Callable[..., dict]] = {
    "resnet18": demo.build,
    "resnet50": resnet50.build,
    "deeplabv3": segmentation.build,
    "fasterrcnn": detection.build,
    "roberta": text_model.build,
}


def build_all(
    out: Path, quick: bool = False, force: bool = False, only: Sequence[str] | None = None
) -> list[dict]:
    """Build the models named in ``only`` (default: all) and update ``out/models.yaml``.

    Entries of models not rebuilt are kept from an existing ``models.yaml``, so rebuilding one
    model with ``--only`` does not drop the others.  Returns the entries written.
    """
    names = [name for name in BUILDERS if not only or name in only]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "models.yaml"
    existing = yaml.safe_load(path.read_text()) if path.is_file() else None
    entries = {entry["name"]: entry for entry in (existing or {}).get("models", [])}
    started = time.monotonic()
    for name in names:
        print(f"== {name}", flush=True)
        model_started = time.monotonic()
        entries[name] = BUILDERS[name](out, quick=quick, force=force)
        print(f"== {name} done in {time.monotonic() - model_started:.0f}s", flush=True)
    rank = {name: i for i, name in enumerate(BUILDERS)}
    ordered = sorted(entries.values(), key=lambda entry: rank.get(entry["name"], len(rank)))
    path.write_text(yaml.safe_dump({"models": ordered}, sort_keys=False))
    print(f"wrote {path} ({len(ordered)} models) in {time.monotonic() - started:.0f}s")
    return ordered


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="smaller, faster builds for tests")
    parser.add_argument("--force", action="store_true", help="rebuild even if the files exist")
    parser.add_argument("--only", nargs="+", choices=list(BUILDERS), metavar="NAME")
    args = parser.parse_args(argv)
    build_all(args.out, quick=args.quick, force=args.force, only=args.only)


if __name__ == "__main__":
    main()
