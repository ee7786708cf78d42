"""(c) Request latency at concurrency 1: HTTP to `autodep.serve` vs the model in-process.

    in-process  in this process: autodep's `ImageDecoder` (decode + preprocess),
                the worker's runner (TorchScript resnet18 forward + softmax) and
                the `ClassificationEncoder` (top-5), torch threads = T, warmed up
    HTTP        `python -m autodep.serve --model resnet18.pt --port 0 --max-workers 1`
                in a subprocess (its worker also gets T threads), one aiohttp
                client posting the JPEG and reading the JSON answer, one at a time

The two never run at the same time: rounds alternate (in-process first, then
HTTP first, ...), and each side's p50 and p90 are taken per round; the table
shows their medians over the rounds (a round ends early once its share of
--budget is spent). On a loaded machine the model call itself varies by more
than the overhead being judged, so it is also timed on both sides (here
directly; in the worker from the server's /metrics, as a mean per round) and
the time outside it is reported as well.

    python -m bench.latency [--quick] [--rounds R] [--requests N] [--budget S] [--threads T]
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    Param,
    Summary,
    make_jpeg,
    make_resnet18,
    median,
    ms,
    parse_args,
    print_header,
    print_table,
    ratio,
)
from bench.server import ServerProcess

PARAMS = [
    Param("rounds", 5, 2, "alternating rounds"),
    Param("requests", 40, 10, "timed requests per side per round"),
    Param("warmup", 10, 5, "untimed requests per side first"),
    Param("budget", 90, 20, "seconds of timed requests at most, shared by all rounds and sides"),
    Param("threads", len(os.sched_getaffinity(0)), len(os.sched_getaffinity(0)), "torch threads"),
]
TARGET_MS = 3.0  # the target: HTTP p50 within this of the in-process p50
COMPUTE = re.compile(r"^autodep_compute_seconds_(sum|count)\{[^}]*\} (\S+)$", re.MULTILINE)

# One request in-process: the result and the seconds of its model call.
Predict = Callable[[bytes], tuple[dict[str, Any], float]]


@dataclass(frozen=True)
class Round:
    """One side's requests in one round."""

    latency: Summary
    mean: float  # mean request time, seconds
    mean_model: float | None  # mean model call, seconds (None: the server did not say)

    @property
    def outside_model(self) -> float | None:
        return None if self.mean_model is None else self.mean - self.mean_model


# -- the in-process side -----------------------------------------------------


def in_process(model: Path, threads: int) -> Predict:
    """The server's code for one request, run here: decode, model, top-5."""
    import torch

    from autodep.codecs.base import Options, Payload
    from autodep.codecs.classification import ClassificationEncoder
    from autodep.codecs.image import ImageDecoder
    from autodep.config import model_from_file
    from autodep.worker.runners import load_model, make_runner

    torch.set_num_threads(threads)
    config = model_from_file(model)
    decoder, encoder = ImageDecoder(config), ClassificationEncoder(config)
    runner = make_runner(load_model(str(model)), config.input, config.output)
    options = Options(top_n=5)

    def predict(jpeg: bytes) -> tuple[dict[str, Any], float]:
        decoded = decoder.decode(Payload(jpeg, "image/jpeg"))
        with torch.inference_mode():
            began = time.perf_counter()
            outputs = runner([[torch.from_numpy(t) for t in decoded.tensors]])[0]
            model_s = time.perf_counter() - began
        return encoder.encode([t.numpy() for t in outputs], decoded, options), model_s

    return predict


def time_in_process(predict: Predict, jpeg: bytes, count: int, limit: float) -> Round:
    """`count` requests, or fewer if they take more than `limit` seconds."""
    samples: list[float] = []
    model_s = 0.0
    stop = time.perf_counter() + limit
    while len(samples) < count and (not samples or time.perf_counter() < stop):
        began = time.perf_counter()
        _, model = predict(jpeg)
        samples.append(time.perf_counter() - began)
        model_s += model
    return Round(Summary.of(samples), sum(samples) / len(samples), model_s / len(samples))


# -- the HTTP side -----------------------------------------------------------


async def post(session: aiohttp.ClientSession, url: str, jpeg: bytes) -> dict[str, Any]:
    headers = {"Content-Type": "image/jpeg"}
    async with session.post(f"{url}/predict", data=jpeg, headers=headers) as response:
        answer: dict[str, Any] = await response.json()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {answer}")
        return answer


async def compute_totals(session: aiohttp.ClientSession, url: str) -> tuple[float, float] | None:
    """The worker's model-call seconds and count so far, from /metrics (None if absent)."""
    async with session.get(f"{url}/metrics") as response:
        if response.status != 200:
            return None
        found = {kind: float(value) for kind, value in COMPUTE.findall(await response.text())}
    if set(found) != {"sum", "count"}:
        return None
    return found["sum"], found["count"]


async def time_http(
    session: aiohttp.ClientSession, url: str, jpeg: bytes, count: int, limit: float
) -> Round:
    """`count` requests, or fewer if they take more than `limit` seconds."""
    before = await compute_totals(session, url)
    samples: list[float] = []
    stop = time.perf_counter() + limit
    while len(samples) < count and (not samples or time.perf_counter() < stop):
        began = time.perf_counter()
        await post(session, url, jpeg)
        samples.append(time.perf_counter() - began)
    after = await compute_totals(session, url)
    mean_model = None
    if before is not None and after is not None and after[1] > before[1]:
        mean_model = (after[0] - before[0]) / (after[1] - before[1])
    return Round(Summary.of(samples), sum(samples) / len(samples), mean_model)


# -- measuring ---------------------------------------------------------------


async def measure(
    predict: Predict, session: aiohttp.ClientSession, urls: dict[str, str], jpeg: bytes, args: Any
) -> tuple[list[Round], dict[str, list[Round]]]:
    """Per-round results of in-process and of each server; the sides take turns going first."""
    local_rounds: list[Round] = []
    remote_rounds: dict[str, list[Round]] = {name: [] for name in urls}
    limit = args.budget / ((1 + len(urls)) * args.rounds)  # seconds per side per round
    for round_no in range(args.rounds):
        sides = [None, *urls]  # None: in-process
        for side in sides if round_no % 2 == 0 else sides[::-1]:
            if side is None:
                local_rounds.append(time_in_process(predict, jpeg, args.requests, limit))
            else:
                remote = await time_http(session, urls[side], jpeg, args.requests, limit)
                remote_rounds[side].append(remote)
        local = local_rounds[-1]
        print(
            f"  round {round_no + 1}: p50 in-process {ms(local.latency.median)} ms "
            f"(model call {ms(local.mean_model or 0)} ms), "
            + ", ".join(
                f"{name} {ms(rounds[-1].latency.median)} ms "
                f"(model call {_ms_or_na(rounds[-1].mean_model)} ms)"
                for name, rounds in remote_rounds.items()
            )
        )
    return local_rounds, remote_rounds


async def warm_up(
    predict: Predict, session: aiohttp.ClientSession, url: str, jpeg: bytes, count: int
) -> None:
    """Both sides answer the same top-1 once warm (same weights, same input)."""
    for _ in range(count):
        predict(jpeg)
        await post(session, url, jpeg)
    (local, _), remote = predict(jpeg), await post(session, url, jpeg)
    if local["predictions"][0]["index"] != remote["predictions"][0]["index"]:
        raise AssertionError(f"different answers: in-process {local}, HTTP {remote}")


# -- report ------------------------------------------------------------------


def report(local: list[Round], remote: list[Round]) -> None:
    counts = sorted({r.latency.n for r in local + remote})
    per_round = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    print(f"medians over {len(local)} rounds of {per_round} sequential requests per side:")
    print_table(["side", "p50 ms", "p90 ms", "mean outside model call ms"], rows(local, remote))
    paired = [r.latency.median - x.latency.median for r, x in zip(remote, local, strict=True)]
    print(f"HTTP - in-process p50, median of per-round differences: {ms(median(paired))} ms")
    overhead = (_median_p50(remote) - _median_p50(local)) * 1e3
    verdict = _verdict(overhead)
    low, high = min(paired) * 1e3, max(paired) * 1e3
    if low <= TARGET_MS < high:
        verdict += f" (but the rounds disagree: per-round differences {low:.2f} to {high:.2f} ms)"
    print(f"target: HTTP p50 within {TARGET_MS:g} ms of in-process p50: {verdict}")
    outside = _median_outside(local), _median_outside(remote)
    if outside[0] is not None and outside[1] is not None:
        extra = (outside[1] - outside[0]) * 1e3
        print(f"steadier: time outside the model call, HTTP - in-process: {extra:.2f} ms")
        print(f"target on that measure: {_verdict(extra)}")


def _verdict(overhead_ms: float) -> str:
    return "met" if overhead_ms <= TARGET_MS else "NOT met"


def rows(local: list[Round], remote: list[Round]) -> list[list[str]]:
    p50 = _median_p50(local), _median_p50(remote)
    p90 = median([r.latency.p90 for r in local]), median([r.latency.p90 for r in remote])
    outside = _median_outside(local), _median_outside(remote)
    outside_diff = None
    if outside[0] is not None and outside[1] is not None:
        outside_diff = outside[1] - outside[0]
    return [
        ["in-process", ms(p50[0]), ms(p90[0]), _ms_or_na(outside[0])],
        ["HTTP (autodep.serve)", ms(p50[1]), ms(p90[1]), _ms_or_na(outside[1])],
        ["ratio HTTP/in-process", ratio(p50[1], p50[0]), ratio(p90[1], p90[0]), ""],
        ["HTTP - in-process", ms(p50[1] - p50[0]), ms(p90[1] - p90[0]), _ms_or_na(outside_diff)],
    ]


def _median_p50(rounds: list[Round]) -> float:
    return median([r.latency.median for r in rounds])


def _median_outside(rounds: list[Round]) -> float | None:
    values = [r.outside_model for r in rounds]
    known = [v for v in values if v is not None]
    return median(known) if len(known) == len(values) else None


def _ms_or_na(seconds: float | None) -> str:
    return "n/a" if seconds is None else ms(seconds)


# -- main --------------------------------------------------------------------


async def run(model: Path, jpeg: bytes, args: Any) -> tuple[list[Round], list[Round]]:
    flags = ["--model", str(model), "--max-workers", "1", "--threads-per-worker", str(args.threads)]
    server = ServerProcess("latency", flags, model.with_name("server.log"))
    try:
        url = await asyncio.get_running_loop().run_in_executor(None, server.url)
        print(f"server at {url}")
        predict = in_process(model, args.threads)
        async with aiohttp.ClientSession() as session:
            await warm_up(predict, session, url, jpeg, args.warmup)
            local, remote = await measure(predict, session, {"HTTP": url}, jpeg, args)
            return local, remote["HTTP"]
    finally:
        code = server.stop()
        print(f"server stopped with SIGTERM, exit code {code}")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], PARAMS)
    print_header("latency: one request at a time, HTTP vs in-process, resnet18", args.mode)
    jpeg = make_jpeg()
    print(f"JPEG 224x224, {len(jpeg)} bytes; torch threads {args.threads} on both sides")
    with tempfile.TemporaryDirectory(prefix="autodep-bench-") as tmp:
        model = make_resnet18(Path(tmp))
        local, remote = asyncio.run(run(model, jpeg, args))
    report(local, remote)


if __name__ == "__main__":
    main()
