"""Report sections on serving: one request's latency, and throughput under load.

Both measure autodep and the plain single-process server (bench/plain_server.py)
against the model called in-process, with the bench scripts' own functions.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from autodep.loadtest.report import table
from bench import latency, throughput
from bench.common import InProcess, model_config
from bench.loadgen import post_loop
from bench.server import ServerProcess, stop_all
from research import plots
from research.paper_base import Context, Goal, Part, load_note, ms, span

LATENCY_TARGETS_MS = {"issue 11": 1.0}  # HTTP p50 over in-process p50
AUTODEP_FLAGS = ["--optimize", "off"]  # the file as given, as in-process; otherwise the defaults
LIMIT_SHARE = 0.90  # throughput at concurrency 32 against the in-process limit
TAIL_RATIO = 2.0  # p99 / p50 at concurrency 32


# -- the servers ---------------------------------------------------------------------


@contextmanager
def servers(ctx: Context, autodep_flags: list[str]) -> Iterator[dict[str, str]]:
    """autodep and the plain aiohttp server of the same model, both on port 0."""
    model = str(ctx.model())
    started = [
        ServerProcess("autodep", ["--model", model, *autodep_flags], ctx.work / "autodep.log"),
        ServerProcess(
            "plain", ["--model", model], ctx.work / "plain.log", module="bench.plain_server"
        ),
    ]
    try:
        yield {server.name: server.url() for server in started}
    finally:
        stop_all(started)


PLAIN = (
    "**plain** is `bench/plain_server.py`: one aiohttp process that decodes in a thread "
    "pool and runs the TorchScript model on one inference thread (all cores), taking every "
    "waiting request as a batch of up to 8 — what one would write by hand."
)


# -- latency -----------------------------------------------------------------------


def measure_latency(ctx: Context) -> dict[str, Any]:
    args = argparse.Namespace(
        rounds=2 if ctx.quick else 5,
        requests=10 if ctx.quick else 40,
        warmup=5 if ctx.quick else 10,
    )
    pipeline = InProcess(model_config(ctx.model(), 224))
    with servers(ctx, AUTODEP_FLAGS) as urls:
        local, remote = latency.measure(pipeline, urls, ctx.jpeg, args)
    return {"in-process": [asdict(r) for r in local]} | {
        name: [asdict(r) for r in rounds] for name, rounds in remote.items()
    }


def render_latency(ctx: Context, results: dict[str, Any]) -> Part:
    p50 = {s: statistics.median(r["latency"]["median"] for r in rs) for s, rs in results.items()}
    p90 = {s: statistics.median(r["latency"]["p90"] for r in rs) for s, rs in results.items()}
    base = p50["in-process"]
    outside = {side: _outside_model(rounds) for side, rounds in results.items()}
    rows = [
        [
            side,
            ms(p50[side]),
            ms(p90[side]),
            f"{(p50[side] - base) * 1e3:+.2f} ms",
            "—" if outside[side] is None else ms(outside[side]),
        ]
        for side in results
    ]
    figure = plots.bars(
        ctx.figure("latency.png"),
        "One request at a time, resnet18: p50 (bar), p90 (whisker), rounds (dots)",
        "ms",
        list(results),
        {"p50": [p50[s] * 1e3 for s in results]},
        upper={"p50": [p90[s] * 1e3 for s in results]},
        points={"p50": [[r["latency"]["median"] * 1e3 for r in rs] for rs in results.values()]},
    )
    n = {r["latency"]["n"] for rs in results.values() for r in rs}
    lines = [
        "One client, one request at a time, a 224x224 JPEG: **in-process** runs autodep's "
        "decoder, the worker's runner and the top-5 encoder in the bench's own process; "
        "**autodep** is `python -m autodep.serve --optimize off` (its defaults otherwise: a "
        f"lone request gets both cores in its worker); {PLAIN} The three take turns in rounds "
        f"({len(results['in-process'])} rounds of {span(n)} requests each; "
        "`bench/latency.py`); the table gives the median over rounds of each round's p50 "
        "and p90.",
        "",
        *table(["side", "p50", "p90", "p50 vs in-process", "mean outside the model call"], rows),
        "",
        "The model call itself varies with the machine's load by more than the overhead "
        "being judged, so it is also timed on each side (in-process directly; in autodep's "
        "worker from its /metrics; the plain server does not say) and the last column is "
        "the mean request time minus the mean model call: the steadier measure of what "
        "serving adds.",
        "",
        f"![latency]({figure.name})",
    ]
    # The goal is judged on the time outside the model call when both sides know it:
    # the p50 difference carries the model call's own variance under load.
    overhead = (p50["autodep"] - base) * 1e3
    measured = f"{overhead:+.2f} ms p50"
    if outside["in-process"] is not None and outside["autodep"] is not None:
        overhead = (outside["autodep"] - outside["in-process"]) * 1e3
        measured = f"{overhead:+.2f} ms outside the model call ({measured})"
    goals = [
        Goal(
            f"autodep within {target:g} ms of in-process at one request ({issue})",
            measured,
            overhead <= target,
            load_note(
                "A request crosses two more thread hand-offs and a process boundary (queue, "
                "shared memory, socket, the worker's wake-up) than the in-process call; on "
                "a loaded machine each wake-up waits for a core"
            ),
        )
        for issue, target in LATENCY_TARGETS_MS.items()
    ]
    versus_plain = (p50["autodep"] - p50["plain"]) * 1e3
    goals.append(
        Goal(
            "autodep p50 within 3 ms of the plain server's",
            f"{versus_plain:+.2f} ms",
            versus_plain <= 3.0,
            "The plain server runs the model in its own process: no hop to a worker.",
        )
    )
    return Part(lines, goals)


def _outside_model(rounds: list[dict[str, Any]]) -> float | None:
    """Median over rounds of (mean request - mean model call); None if not known."""
    known = [r["mean"] - r["mean_model"] for r in rounds if r.get("mean_model") is not None]
    return statistics.median(known) if known and len(known) == len(rounds) else None


# -- throughput ----------------------------------------------------------------------


def measure_throughput(ctx: Context) -> dict[str, Any]:
    concurrencies = (1, 8, 32) if ctx.quick else (1, 2, 4, 8, 16, 32)
    seconds, reps = (4.0, 2) if ctx.quick else (15.0, 6)
    jpeg = ctx.jpeg
    pipeline = InProcess(model_config(ctx.model(), 224))
    single = [_timed(pipeline, jpeg) for _ in range(reps * 5)]
    before = throughput.in_process_limit(pipeline, jpeg, reps)

    async def run(urls: dict[str, str]) -> dict[str, dict[str, Any]]:
        for url in urls.values():  # warm every batch size in the workers
            await post_loop(url, jpeg, 32, seconds=2)
        loads: dict[str, dict[str, Any]] = {name: {} for name in urls}
        for i, concurrency in enumerate(concurrencies):
            for name in list(urls) if i % 2 == 0 else list(urls)[::-1]:
                load = await post_loop(urls[name], jpeg, concurrency, seconds=seconds)
                loads[name][str(concurrency)] = {
                    "per_s": load.ok_per_s,
                    "p50_s": load.percentile(50),
                    "p99_s": load.percentile(99),
                }
                print(f"  {name} c={concurrency}: {load.ok_per_s:.1f} img/s", flush=True)
        return loads

    with servers(ctx, AUTODEP_FLAGS) as urls:
        loads = asyncio.run(run(urls))
    after = throughput.in_process_limit(pipeline, jpeg, reps)
    limits = [{**asdict(limit), "single_s": statistics.median(single)} for limit in (before, after)]
    return {"limit": limits, "loads": loads, "seconds": seconds}


def _timed(pipeline: InProcess, jpeg: bytes) -> float:
    began = time.perf_counter()
    pipeline(jpeg)
    return time.perf_counter() - began


def render_throughput(ctx: Context, results: dict[str, Any]) -> Part:
    limits = results["limit"]
    limit = statistics.mean(x["best_per_s"] for x in limits)
    loads = results["loads"]
    concurrencies = [int(c) for c in loads["autodep"]]
    top = str(max(concurrencies))
    rows = []
    for c in map(str, concurrencies):
        a, p = loads["autodep"][c], loads["plain"][c]
        rows.append(
            [
                c,
                f"{a['per_s']:.1f}",
                f"{a['p50_s'] * 1e3:.0f} / {a['p99_s'] * 1e3:.0f}",
                f"{p['per_s']:.1f}",
                f"{p['p50_s'] * 1e3:.0f} / {p['p99_s'] * 1e3:.0f}",
            ]
        )
    rate = plots.lines(
        ctx.figure("throughput.png"),
        "Throughput, closed loop, resnet18",
        "concurrent clients",
        "images / s",
        concurrencies,
        {name: [loads[name][str(c)]["per_s"] for c in concurrencies] for name in loads},
        levels={f"in-process limit ({limit:.1f})": limit},
    )
    tail = plots.lines(
        ctx.figure("latency_under_load.png"),
        "Latency under load (p50 solid, p99 dashed)",
        "concurrent clients",
        "ms",
        concurrencies,
        {
            f"{name} {q}": [loads[name][str(c)][f"{q}_s"] * 1e3 for c in concurrencies]
            for name in loads
            for q in ("p50", "p99")
        },
        log_y=True,
    )
    autodep, plain = loads["autodep"][top], loads["plain"][top]
    lines = [
        f"Closed-loop clients on the same machine (`bench/loadgen.py`, keep-alive), "
        f"{results['seconds']:g} s per point after a warm-up: **autodep** is "
        "`python -m autodep.serve --optimize off` (its defaults otherwise: adaptive threads, "
        f"batches of up to 8); {PLAIN} The two "
        "take turns at each concurrency. The **in-process limit** is the same decode + "
        "model + top-5 in one process at the best batch size of 1-16 with every core, "
        f"measured before and after the servers ({limits[0]['best_per_s']:.1f} img/s at "
        f"batch {limits[0]['best_batch']}, {limits[1]['best_per_s']:.1f} at batch "
        f"{limits[1]['best_batch']}; one image alone {limits[0]['single_s'] * 1e3:.0f} and "
        f"{limits[1]['single_s'] * 1e3:.0f} ms; `bench/throughput.py`).",
        "",
        *table(
            ["clients", "autodep img/s", "autodep p50 / p99 ms", "plain img/s", "plain p50 / p99"],
            rows,
        ),
        "",
        f"![throughput]({rate.name})",
        "",
        f"![latency under load]({tail.name})",
    ]
    share = autodep["per_s"] / limit
    goals = [
        Goal(
            f"autodep at {top} clients >= {LIMIT_SHARE:.2f} of the in-process limit",
            f"{share:.2f}",
            share >= LIMIT_SHARE,
            load_note(
                "The limit and the servers were measured minutes apart, and other jobs "
                "took a varying share of the cores in between"
            ),
        ),
        Goal(
            f"p99 / p50 < {TAIL_RATIO:g} at {top} clients",
            f"{autodep['p99_s'] / autodep['p50_s']:.2f}",
            autodep["p99_s"] / autodep["p50_s"] < TAIL_RATIO,
            "Under a closed loop a slow batch holds a whole batch of clients back.",
        ),
        Goal(
            f"autodep at {top} clients at least as fast as the plain server",
            f"{autodep['per_s']:.1f} vs {plain['per_s']:.1f} img/s",
            autodep["per_s"] >= plain["per_s"],
            "Both servers saturate the same cores. autodep adds a hop between processes "
            "per batch and splits the cores between its workers; when other jobs hold "
            "cores, a split loses more than one process using every core (a hypothesis: "
            "`python -m bench.throughput` compares 1 worker x all threads with 2 x 1).",
        ),
    ]
    return Part(lines, goals)
