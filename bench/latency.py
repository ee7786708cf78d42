"""Request latency at concurrency 1: HTTP to `autodep.serve` vs the model in-process.

    in-process  in this process, as a user runs the model: autodep's decoder
                (decode + preprocess), the worker's runner (TorchScript resnet18
                + softmax) and the encoder (top-5), torch's default threads and
                OpenMP's default waiting (no variables set), warmed up
    HTTP        `python -m autodep.serve --config m.yaml --optimize off` (otherwise its
                defaults; the same model file as in-process) in a
                subprocess, one lean keep-alive client (bench.loadgen) posting
                the JPEG and reading the answer, one request at a time

Two models: resnet18 at 224x224, and the same file fed 64x64 inputs (a few ms
of model), where a fixed overhead per request shows. The sides never run at
the same time: rounds alternate (in-process first, then HTTP first, ...); each
side's p50 is taken per round and the table shows medians over the rounds.
The model call is also timed on both sides (in the worker from /metrics), and
the time outside it reported, since on a loaded machine the model call varies
by more than the overhead being judged. The server's own histograms split a
request into its parts: decode and model call in the worker, queue wait, the
rest of the handler (shared memory, socket round trip, encode, JSON), and what
lies outside the handler (HTTP parsing and writing, loopback, the client).

    python -m bench.latency [--quick] [--rounds R] [--requests N] [--warmup W]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.common import (
    InProcess,
    Param,
    Summary,
    baseline_environment,
    make_jpeg,
    make_resnet18,
    median,
    model_config,
    ms,
    parse_args,
    print_header,
    print_table,
    write_repository,
)
from bench.loadgen import closed_loop
from bench.server import ServerProcess

PARAMS = [
    Param("rounds", 5, 2, "alternating rounds"),
    Param("requests", 40, 15, "timed requests per side per round"),
    Param("warmup", 10, 5, "untimed requests per side first"),
]
# The file as given on both sides: this measures the path around the model, not the
# optimizer (bench.optimize does that).
SERVER_FLAGS = ["--optimize", "off"]
TARGET_MS = 1.0  # issue 11: HTTP p50 within this of the in-process p50
HISTOGRAM = re.compile(r"^autodep_(\w+)_seconds_(sum|count)\{[^}]*\} (\S+)$", re.MULTILINE)
PARTS = ("request_duration", "queue_wait", "decode", "compute")  # the server's histograms


@dataclass(frozen=True)
class Round:
    """One side's requests in one round."""

    latency: Summary
    mean: float  # mean request time, seconds
    mean_model: float | None  # mean model call, seconds (None: the server does not say)
    parts: dict[str, float] | None = None  # an autodep server's histograms' means, seconds

    @property
    def outside_model(self) -> float | None:
        return None if self.mean_model is None else self.mean - self.mean_model


def time_in_process(pipeline: InProcess, jpeg: bytes, count: int) -> Round:
    samples, model_s = [], 0.0
    for _ in range(count):
        began = time.perf_counter()
        _, model = pipeline(jpeg)
        samples.append(time.perf_counter() - began)
        model_s += model
    return Round(Summary.of(samples), sum(samples) / count, model_s / count)


def histogram_totals(url: str) -> dict[tuple[str, str], float]:
    """(histogram, "sum" | "count") -> value so far, from the server's /metrics (if it has one)."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            text = response.read().decode()
    except urllib.error.HTTPError:
        return {}
    return {(name, kind): float(value) for name, kind, value in HISTOGRAM.findall(text)}


def part_means(
    before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]
) -> dict[str, float]:
    """Mean seconds per request of each part between two scrapes (one request per batch);
    empty when the server keeps no such histograms."""

    def delta(key: tuple[str, str]) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    if not delta(("request_duration", "count")):
        return {}
    return {name: delta((name, "sum")) / max(1.0, delta((name, "count"))) for name in PARTS}


async def time_http(url: str, jpeg: bytes, count: int) -> Round:
    address = urlsplit(url)
    before = histogram_totals(url)
    result = await closed_loop(
        address.hostname or "127.0.0.1",
        address.port or 80,
        "/predict",
        jpeg,
        "image/jpeg",
        concurrency=1,
        requests=count,
    )
    if result.statuses.get(200) != count:
        raise RuntimeError(f"not every request answered 200: {result.statuses}")
    parts = part_means(before, histogram_totals(url))
    samples = result.latencies
    return Round(Summary.of(samples), sum(samples) / count, parts.get("compute"), parts or None)


def measure(
    pipeline: InProcess, urls: dict[str, str], jpeg: bytes, args: argparse.Namespace
) -> tuple[list[Round], dict[str, list[Round]]]:
    """Per-round results in-process and of each server; the sides take turns going first."""
    time_in_process(pipeline, jpeg, args.warmup)
    for url in urls.values():
        asyncio.run(time_http(url, jpeg, args.warmup))
    local_rounds: list[Round] = []
    remote_rounds: dict[str, list[Round]] = {name: [] for name in urls}
    sides: list[str | None] = [None, *urls]  # None: in-process
    for round_no in range(args.rounds):
        for side in sides if round_no % 2 == 0 else sides[::-1]:
            if side is None:
                local_rounds.append(time_in_process(pipeline, jpeg, args.requests))
            else:
                remote_rounds[side].append(asyncio.run(time_http(urls[side], jpeg, args.requests)))
        print(
            f"  round {round_no + 1}: p50 in-process {ms(local_rounds[-1].latency.median)} ms, "
            + ", ".join(f"{n} {ms(r[-1].latency.median)} ms" for n, r in remote_rounds.items())
        )
    return local_rounds, remote_rounds


def report(resize: int, local: list[Round], remote: list[Round]) -> None:
    p50 = median([r.latency.median for r in local]), median([r.latency.median for r in remote])
    p90 = median([r.latency.p90 for r in local]), median([r.latency.p90 for r in remote])
    outside = _median_outside(local), _median_outside(remote)
    print(f"resnet18 at {resize}x{resize}, medians over {len(local)} rounds:")
    print_table(
        ["side", "p50 ms", "p90 ms", "mean outside the model call ms"],
        [
            ["in-process (default environment)", ms(p50[0]), ms(p90[0]), ms(outside[0])],
            ["HTTP (autodep.serve defaults)", ms(p50[1]), ms(p90[1]), ms(outside[1])],
            [
                "HTTP - in-process",
                ms(p50[1] - p50[0]),
                ms(p90[1] - p90[0]),
                ms(outside[1] - outside[0]),
            ],
        ],
    )
    breakdown(remote)
    paired = [r.latency.median - x.latency.median for r, x in zip(remote, local, strict=True)]
    overhead = (p50[1] - p50[0]) * 1e3
    print(
        f"HTTP - in-process p50: {overhead:+.2f} ms (per-round differences "
        f"{min(paired) * 1e3:+.2f} to {max(paired) * 1e3:+.2f} ms); target within "
        f"{TARGET_MS:g} ms: {'met' if overhead <= TARGET_MS else 'NOT met'}"
    )


def _median_outside(rounds: list[Round]) -> float:
    return median([r.outside_model for r in rounds if r.outside_model is not None])


def breakdown(remote: list[Round]) -> None:
    """Where an HTTP request's time goes, from the server's histograms (medians of rounds)."""
    parts = {n: median([r.parts[n] for r in remote if r.parts]) for n in PARTS}
    mean = median([r.mean for r in remote])
    handler_rest = parts["request_duration"] - parts["queue_wait"] - parts["decode"]
    handler_rest -= parts["compute"]
    rows = [
        ["decode in the worker", ms(parts["decode"])],
        ["model call in the worker", ms(parts["compute"])],
        ["queue wait", ms(parts["queue_wait"])],
        ["rest of the handler: shm, socket round trip, encode, JSON", ms(handler_rest)],
        [
            "outside the handler: HTTP parse/write, loopback, client",
            ms(mean - parts["request_duration"]),
        ],
        ["whole request (client's mean)", ms(mean)],
    ]
    print_table(["HTTP request, mean per part", "ms"], rows)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], PARAMS)
    print_header("latency: one request at a time, HTTP vs in-process, resnet18", args.mode)
    jpeg = make_jpeg()
    print(f"JPEG 224x224, {len(jpeg)} bytes; in-process: {baseline_environment()}")
    with tempfile.TemporaryDirectory(prefix="autodep-bench-") as tmp:
        directory = Path(tmp)
        model = make_resnet18(directory)
        for resize in (224, 64):
            config = model_config(model, resize)
            repository = write_repository(config, directory)
            log = directory / f"server-{resize}.log"
            flags = ["--config", str(repository), *SERVER_FLAGS]
            with ServerProcess(f"latency-{resize}", flags, log) as server:
                url = server.url()
                local, remote = measure(InProcess(config), {"HTTP": url}, jpeg, args)
            report(resize, local, remote["HTTP"])


if __name__ == "__main__":
    main()
