"""Throughput and latency under load: autodep over HTTP vs the in-process limit.

    in-process limit  this process runs the same pipeline as the server (JPEG decode
                      and preprocess with autodep's `ImageDecoder`, TorchScript
                      resnet18, softmax, top-5) at batch sizes 1..16 with all cores;
                      the best images/s is the limit, batch 1 the lone-request time
    HTTP              `python -m autodep.serve` in a subprocess, one configuration
                      at a time; closed-loop aiohttp clients on this machine: at
                      concurrency 1 (p50) and at concurrency 32 (images/s, p50, p99)

The configurations compare one worker with every core against one worker per
core, with fixed threads and with autodep's default (threads adapted per batch).
The in-process limit is measured before and after the HTTP runs; the table uses
the mean of the two, so drift on a shared machine shows instead of hiding.

    python -m bench.throughput [--quick] [--seconds S] [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np

from bench.common import Param, make_jpeg, make_resnet18, ms, parse_args, print_header, print_table
from bench.server import ServerProcess

PARAMS = [
    Param("seconds", 20, 5, "seconds of load at concurrency 32 per configuration"),
    Param("requests", 60, 20, "sequential requests at concurrency 1 per configuration"),
    Param("reps", 6, 2, "repetitions per batch size in-process"),
]
BATCH_SIZES = (1, 2, 4, 8, 16)
CORES = len(os.sched_getaffinity(0))
CONFIGS = {
    f"1 worker x {CORES} threads": ["--max-workers", "1", "--threads-per-worker", str(CORES)],
    f"{CORES} workers x 1 thread": [
        "--max-workers",
        str(CORES),
        "--min-workers",
        str(CORES),
        "--threads-per-worker",
        "1",
    ],
    f"{CORES} workers, adaptive threads (default)": [
        "--max-workers",
        str(CORES),
        "--min-workers",
        str(CORES),
    ],
}


@dataclass(frozen=True)
class Limit:
    best_per_s: float
    best_batch: int
    single_s: float  # one image, batch 1: median seconds


@dataclass(frozen=True)
class Load:
    per_s: float
    p50_s: float
    p99_s: float


def in_process_limit(model: Path, jpeg: bytes, reps: int) -> Limit:
    """decode + model + top-5 in this process, at each batch size; the best rate wins."""
    import torch

    from autodep.codecs.base import Options, Payload
    from autodep.codecs.classification import ClassificationEncoder
    from autodep.codecs.image import ImageDecoder
    from autodep.config import model_from_file
    from autodep.worker.runners import load_model, make_runner

    torch.set_num_threads(CORES)
    config = model_from_file(model)
    decoder, encoder = ImageDecoder(config), ClassificationEncoder(config)
    runner = make_runner(load_model(str(model)), config.input, config.output)
    options = Options(top_n=5)

    def pipeline(batch: int) -> float:
        began = time.perf_counter()
        decoded = [decoder.decode(Payload(jpeg, "image/jpeg")) for _ in range(batch)]
        with torch.inference_mode():
            outputs = runner([[torch.from_numpy(t) for t in d.tensors] for d in decoded])
        for out, dec in zip(outputs, decoded, strict=True):
            encoder.encode([t.numpy() for t in out], dec, options)
        return time.perf_counter() - began

    rates = {}
    for batch in BATCH_SIZES:
        for _ in range(3):  # warm-up: the first calls of a new shape re-optimise the graph
            pipeline(batch)
        rates[batch] = batch / float(np.median([pipeline(batch) for _ in range(reps)]))
    single = float(np.median([pipeline(1) for _ in range(reps * 5)]))
    best = max(rates, key=lambda b: rates[b])
    return Limit(rates[best], best, single)


async def closed_loop(
    url: str, jpeg: bytes, concurrency: int, *, seconds: float = 0, requests: int = 0
) -> Load:
    """`concurrency` clients, each posting as soon as its last answer came back."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    headers = {"Content-Type": "image/jpeg"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client(count: int) -> None:
            sent = 0
            while (requests and sent < count) or (seconds and time.perf_counter() < deadline):
                began = time.perf_counter()
                async with session.post(f"{url}/predict", data=jpeg, headers=headers) as reply:
                    await reply.read()
                    if reply.status != 200:
                        raise RuntimeError(f"HTTP {reply.status}: {await reply.text()}")
                latencies.append(time.perf_counter() - began)
                sent += 1

        began = time.perf_counter()
        await asyncio.gather(*(client(requests // concurrency) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    values = np.asarray(latencies)
    return Load(
        len(values) / elapsed, float(np.percentile(values, 50)), float(np.percentile(values, 99))
    )


async def measure_config(
    name: str, flags: list[str], model: Path, jpeg: bytes, args: argparse.Namespace, log: Path
) -> tuple[Load, Load]:
    with ServerProcess(name, ["--model", str(model), *flags], log) as server:
        url = server.url()
        await closed_loop(url, jpeg, 32, seconds=2)  # warm every batch size in the workers
        await closed_loop(url, jpeg, 1, requests=10)
        lone = await closed_loop(url, jpeg, 1, requests=args.requests)
        loaded = await closed_loop(url, jpeg, 32, seconds=args.seconds)
    return lone, loaded


def main() -> None:
    args = parse_args(__doc__ or "", PARAMS)
    print_header("throughput: HTTP under load vs the in-process limit, resnet18", args.mode)
    with tempfile.TemporaryDirectory(prefix="autodep-bench-") as tmp:
        directory = Path(tmp)
        model, jpeg = make_resnet18(directory), make_jpeg()
        before = in_process_limit(model, jpeg, args.reps)
        results = {
            name: asyncio.run(
                measure_config(name, flags, model, jpeg, args, directory / f"server-{i}.log")
            )
            for i, (name, flags) in enumerate(CONFIGS.items())
        }
        after = in_process_limit(model, jpeg, args.reps)
    limit_per_s = (before.best_per_s + after.best_per_s) / 2
    single_s = (before.single_s + after.single_s) / 2
    print(
        f"in-process limit: {limit_per_s:.1f} img/s at batch {before.best_batch}/{after.best_batch}"
        f" (before {before.best_per_s:.1f}, after {after.best_per_s:.1f}); "
        f"one image {ms(single_s)} ms"
    )
    rows = []
    for name, (lone, loaded) in results.items():
        rows.append(
            [
                name,
                ms(lone.p50_s),
                f"{(lone.p50_s - single_s) * 1e3:+.2f}",
                f"{loaded.per_s:.1f}",
                f"{loaded.per_s / limit_per_s:.2f}",
                ms(loaded.p50_s),
                ms(loaded.p99_s),
                f"{loaded.p99_s / loaded.p50_s:.2f}",
            ]
        )
    print_table(
        [
            "configuration",
            "c=1 p50 ms",
            "vs in-process ms",
            "c=32 img/s",
            "of limit",
            "c=32 p50 ms",
            "c=32 p99 ms",
            "p99/p50",
        ],
        rows,
    )
    print("targets: of limit >= 0.90; c=1 p50 within 2 ms of in-process; c=32 p99/p50 < 2")


if __name__ == "__main__":
    main()
