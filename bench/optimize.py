"""The optimizer, served: resnet18 and resnet50 as given and optimized, in one run.

    models       torchvision resnet18 and resnet50 (224x224, untrained weights), TorchScript,
                 made here; `autodep optimize` searches each in a fresh cache (its table is
                 printed), then each is served twice: `--optimize off` and `--optimize auto`
                 (from that cache), with the default pool (a worker per core)
    load         closed-loop aiohttp clients on this machine: concurrency 1 (p50 over
                 --requests) and concurrency 32 (img/s over --seconds), a 224x224 JPEG
    agreement    if the trained example classifiers are present (--examples DIR with a
                 models.yaml, from `python -m examples.build`), both forms of each answer
                 --images fresh generated pictures: top-1 agreement and accuracy (a
                 demo.yaml from `python -m examples.demo` does for the resnet18)

Goals (issue 12): on a CPU with AMX, resnet50 served >= 6x as given at c=32 and c=1 p50 <=
1/4 of as given; on AVX2 only, >= 1.5x; agreement >= 99%; never below as given.

    python -m bench.optimize [--quick] [--seconds S] [--requests N] [--images N] [--examples DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from bench.common import Param, make_jpeg, ms, parse_args, print_header, print_table
from bench.loadgen import LoadResult, post_loop
from bench.server import ServerProcess

PARAMS = [
    Param("seconds", 20, 5, "seconds of load at concurrency 32 per server"),
    Param("requests", 60, 20, "sequential requests at concurrency 1 per server"),
    Param("images", 200, 40, "fresh pictures per trained classifier for the agreement"),
    Param("budget", 300, 120, "seconds of search per model"),
]
ARCHS = ("resnet18", "resnet50")


def make_model(directory: Path, arch: str) -> Path:
    """A torchvision architecture with untrained weights, scripted to `directory/ARCH.pt`."""
    import torch
    import torchvision

    model = getattr(torchvision.models, arch)(weights=None).eval()
    path = directory / f"{arch}.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(model).save(str(path))
    return path


def optimize(target: list[str], cache: Path, budget: int, more: Sequence[str] = ()) -> str:
    """`autodep optimize` (a fresh search in `cache`, with `more` flags); its table."""
    command = [sys.executable, "-m", "autodep.cli", "optimize", *target]
    flags = ["--cache-dir", str(cache), "--optimize-budget", str(budget), *more]
    done = subprocess.run(command + flags, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"autodep optimize failed:\n{done.stderr[-3000:]}")
    return done.stdout


async def load(
    flags: list[str], jpeg: bytes, args: argparse.Namespace, log: Path
) -> tuple[LoadResult, LoadResult, str]:
    """c=1 and c=32 through a server started with `flags`; also its variant and its workers'
    start times (from /status)."""
    with ServerProcess(log.stem, flags, log) as server:
        url = server.url()
        await post_loop(url, jpeg, 32, seconds=2)  # warm every batch size in the workers
        await post_loop(url, jpeg, 1, requests=10)
        lone = await post_loop(url, jpeg, 1, requests=args.requests)
        loaded = await post_loop(url, jpeg, 32, seconds=args.seconds)
        async with aiohttp.ClientSession() as session, session.get(f"{url}/status") as reply:
            (status,) = (await reply.json())["models"].values()
    starts = ", ".join(f"{w['startup_s']:.2f}" for w in status["workers"] if w["startup_s"])
    return lone, loaded, f"{status['variant']['name']} (worker starts {starts} s)"


async def answers(flags: list[str], model: str, images: list[bytes], log: Path) -> list[str]:
    """The top-1 label of each image from a server started with `flags`."""
    labels = []
    with ServerProcess(log.stem, flags, log) as server:
        url = server.url()
        async with aiohttp.ClientSession() as session:
            for body in images:
                headers = {"Content-Type": "image/png"}
                async with session.post(f"{url}/predict/{model}", data=body, headers=headers) as r:
                    labels.append((await r.json())["predictions"][0]["label"])
    return labels


def pictures(count: int) -> tuple[list[bytes], list[str]]:
    import numpy as np

    from examples import shapes

    rng = np.random.default_rng(20261201)
    bodies, truth = [], []
    for _ in range(count):
        image, label = shapes.classification_sample(rng)
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        bodies.append(buffer.getvalue())
        truth.append(shapes.SHAPES[label])
    return bodies, truth


def served(directory: Path, args: argparse.Namespace) -> None:
    jpeg = make_jpeg()
    rows = []
    for arch in ARCHS:
        model = make_model(directory, arch)
        cache = directory / f"cache-{arch}"
        print(f"-- {arch}: autodep optimize", flush=True)
        print(optimize([str(model)], cache, args.budget), flush=True)
        base = ["--model", str(model), "--cache-dir", str(cache)]
        given = asyncio.run(
            load([*base, "--optimize", "off"], jpeg, args, directory / f"{arch}-off.log")
        )
        best = asyncio.run(
            load(
                [*base, "--optimize", "auto", "--optimize-wait", "on"],
                jpeg,
                args,
                directory / f"{arch}-auto.log",
            )
        )
        for name, (lone, loaded, variant) in (("as given", given), ("optimized", best)):
            rows.append(
                [
                    f"{arch} {name}",
                    f"{loaded.ok_per_s:.1f}",
                    ms(lone.percentile(50)),
                    ms(loaded.percentile(99)),
                    variant,
                ]
            )
        rows.append(
            [
                f"{arch} optimized / as given",
                f"{best[1].ok_per_s / given[1].ok_per_s:.2f}x",
                f"{best[0].percentile(50) / given[0].percentile(50):.2f}x",
                "",
                "",
            ]
        )
    print_table(["served", "c=32 img/s", "c=1 p50 ms", "c=32 p99 ms", "variant"], rows)


def agreement(examples: Path, directory: Path, args: argparse.Namespace) -> None:
    config = next(
        (examples / n for n in ("models.yaml", "demo.yaml") if (examples / n).is_file()), None
    )
    if config is None:
        print(f"no trained example classifiers in {examples} (python -m examples.build --out DIR)")
        return
    images, truth = pictures(args.images)
    cache = directory / "cache-examples"
    rows = []
    for name in ARCHS:
        if not (examples / f"{name}.pt").is_file():
            continue
        only = directory / f"{name}.yaml"
        only.write_text(_one_model(config, name))
        print(f"-- trained {name}: autodep optimize", flush=True)
        print(optimize(["--config", str(only)], cache, args.budget), flush=True)
        base = ["--config", str(only), "--cache-dir", str(cache)]
        given = asyncio.run(
            answers([*base, "--optimize", "off"], name, images, directory / f"{name}-t-off.log")
        )
        best = asyncio.run(
            answers(
                [*base, "--optimize", "auto", "--optimize-wait", "on"],
                name,
                images,
                directory / f"{name}-t-auto.log",
            )
        )
        same = sum(a == b for a, b in zip(given, best, strict=True))
        right = [
            sum(a == t for a, t in zip(labels, truth, strict=True)) for labels in (given, best)
        ]
        rows.append(
            [
                name,
                f"{same}/{len(images)}",
                f"{right[0]}/{len(images)}",
                f"{right[1]}/{len(images)}",
            ]
        )
    print_table(
        ["trained classifier", "top-1 agreement", "right as given", "right optimized"], rows
    )


def _one_model(config: Path, name: str) -> str:
    """A models.yaml with only `name`, its paths made absolute."""
    import yaml

    document = yaml.safe_load(config.read_text())
    (entry,) = [m for m in document["models"] if m["name"] == name]
    for key in ("path", "labels"):
        entry[key] = str((config.parent / entry[key]).resolve())
    return yaml.safe_dump({"models": [entry]})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--examples", type=Path, default=Path("models"), help="trained example models"
    )
    args = parse_args("", PARAMS, argv, parser)
    print_header(
        "optimize: resnet18 and resnet50 served as given and optimized",
        "quick" if args.quick else "full",
    )
    with tempfile.TemporaryDirectory(prefix="autodep-bench-") as tmp:
        served(Path(tmp), args)
        agreement(args.examples, Path(tmp), args)


if __name__ == "__main__":
    main()
