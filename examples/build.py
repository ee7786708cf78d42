"""Build every example model and write the server's ``models.yaml``.

Usage::

    python -m examples.build --out DIR [--quick] [--force] [--only NAME ...] [--jobs N]

Each model is trained here on generated data (nothing is downloaded) and cached: existing
outputs are reused unless ``--force``.  ``models.yaml`` lists the models built by this run
(all five unless ``--only``), with paths relative to ``DIR``.

Models train ``--jobs`` at a time (default 2), each in its own process with the cores shared
among them.  These small models use two threads poorly: beside another one-thread training, a
one-thread resnet18 took 150 s where it took 119 s alone on two threads, so two side by side
do 1.6 times the work.
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from functools import partial
from pathlib import Path

import yaml

from examples import classifier, detection, segmentation, text_model
from examples.training import write_config

# In the order of models.yaml.
BUILDERS: dict[str, Callable[..., dict]] = {
    "resnet18": partial(classifier.build, name="resnet18"),
    "resnet50": partial(classifier.build, name="resnet50"),
    "deeplabv3": segmentation.build,
    "fasterrcnn": detection.build,
    "roberta": text_model.build,
}
# Started in this order when a job is free: the longest chain first.
START_ORDER = ("deeplabv3", "resnet50", "fasterrcnn", "resnet18", "roberta")
AFTER = {"fasterrcnn": "deeplabv3"}  # it starts from deeplabv3's backbone


def build_all(
    out: Path,
    quick: bool = False,
    force: bool = False,
    only: Sequence[str] | None = None,
    jobs: int = 2,
) -> list[dict]:
    """Build the models named in ``only`` (default: all) and update ``out/models.yaml``.

    Entries of models not rebuilt are kept from an existing ``models.yaml``, so rebuilding one
    model with ``--only`` does not drop the others.  Returns the entries written.
    """
    waiting = [name for name in START_ORDER if not only or name in only]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "models.yaml"
    existing = yaml.safe_load(path.read_text()) if path.is_file() else None
    entries = {entry["name"]: entry for entry in (existing or {}).get("models", [])}
    started = time.monotonic()
    # Read by the example modules when a job process imports them.
    os.environ.setdefault("EXAMPLES_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    with ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_die_with_parent
    ) as pool:
        running: dict[Future[dict], str] = {}
        while waiting or running:
            for name in list(waiting):
                if len(running) < jobs and AFTER.get(name) not in {*waiting, *running.values()}:
                    print(f"== {name}", flush=True)
                    running[pool.submit(_build, name, out, quick, force)] = name
                    waiting.remove(name)
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                entries[running.pop(future)] = future.result()
    rank = {name: i for i, name in enumerate(BUILDERS)}
    ordered = sorted(entries.values(), key=lambda entry: rank.get(entry["name"], len(rank)))
    write_config(path, ordered)
    print(f"wrote {path} ({len(ordered)} models) in {time.monotonic() - started:.0f}s")
    return ordered


def _build(name: str, out: Path, quick: bool, force: bool) -> dict:
    """One model, in a job process."""
    started = time.monotonic()
    entry = BUILDERS[name](out, quick=quick, force=force)
    print(f"== {name} done in {time.monotonic() - started:.0f}s", flush=True)
    return entry


def _die_with_parent() -> None:
    """A training process ends with the build, even when the build is killed (a timeout)."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="for tests: roberta on less text")
    parser.add_argument("--force", action="store_true", help="rebuild even if the files exist")
    parser.add_argument("--only", nargs="+", choices=list(BUILDERS), metavar="NAME")
    parser.add_argument("--jobs", type=int, default=2, help="models trained at a time")
    args = parser.parse_args(argv)
    build_all(args.out, quick=args.quick, force=args.force, only=args.only, jobs=args.jobs)


if __name__ == "__main__":
    main()
