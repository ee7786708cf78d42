"""Report sections on the process boundary: tensor transport and worker start."""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
from dataclasses import asdict
from typing import Any

from autodep.loadtest.report import table
from bench import startup, transport
from research import plots
from research.paper_base import CORES, Context, Goal, Part, load_note

READY_TARGET_S = startup.READY_TARGET_S


# -- transport ---------------------------------------------------------------------

TRANSPORT_BATCHES = (1, 8)


def measure_transport(ctx: Context) -> dict[str, Any]:
    iterations, rounds = (300, 2) if ctx.quick else (5000, 10)
    found: dict[str, Any] = {}
    for batch in TRANSPORT_BATCHES:
        array = transport.make_tensor(batch)
        echoes = transport.make_echoes(multiprocessing.get_context("spawn"))
        try:
            for echo in echoes:
                transport.check(echo, array, 20)
            count = max(rounds, iterations // batch)
            summaries = transport.run(echoes, array, count, rounds)
        finally:
            for echo in echoes:
                echo.close()
        found[str(batch)] = {
            "bytes": array.nbytes,
            **{e.name: asdict(s) for e, s in zip(echoes, summaries, strict=True)},
        }
    return found


def render_transport(ctx: Context, results: dict[str, Any]) -> Part:
    shm, pipe = "shm + msgpack", "pickle + Pipe"
    rows, groups = [], []
    for batch, r in results.items():
        groups.append(f"batch {batch} ({r['bytes'] / 1e6:.1f} MB)")
        rows.append(
            [
                batch,
                f"{r[shm]['median'] * 1e6:.0f} / {r[shm]['p90'] * 1e6:.0f}",
                f"{r[pipe]['median'] * 1e6:.0f} / {r[pipe]['p90'] * 1e6:.0f}",
                f"{r[pipe]['median'] / r[shm]['median']:.1f}x",
                f"{2 * r['bytes'] / r[shm]['median'] / 1e9:.2f}",
            ]
        )
    figure = plots.bars(
        ctx.figure("transport.png"),
        "Tensor round trip server → worker → server (median, whisker to p90)",
        "µs",
        groups,
        {m: [r[m]["median"] * 1e6 for r in results.values()] for m in (shm, pipe)},
        upper={m: [r[m]["p90"] * 1e6 for r in results.values()] for m in (shm, pipe)},
        log=True,
    )
    one = results[str(TRANSPORT_BATCHES[0])]
    speedup = one[pipe]["median"] / one[shm]["median"]
    lines = [
        "Both children are real processes running an echo loop: autodep's path copies the "
        "tensor into a memfd buffer and sends a msgpack header over a socketpair (the child "
        "copies it into its out-buffer, as a worker writes its result); the baseline pickles "
        "the numpy array through a `multiprocessing.Pipe` both ways. Rounds of the two "
        "alternate (`bench/transport.py`).",
        "",
        *table(["batch", "shm + msgpack µs (median / p90)", "pickle µs", "speed-up", "GB/s"], rows),
        "",
        f"![transport]({figure.name})",
    ]
    goal = Goal(
        "shared memory beats pickling through a pipe (1 image)",
        f"{speedup:.1f}x faster",
        speedup > 1,
        "The msgpack header and the socket wake-ups cost more than copying one tensor.",
    )
    return Part(lines, [goal])


# -- startup -----------------------------------------------------------------------


def measure_startup(ctx: Context) -> dict[str, Any]:
    spec, tensor = startup.worker_spec(ctx.model(), CORES)
    launchers = [startup.TimedLauncher("forkserver"), startup.TimedLauncher("spawn")]
    booted = startup.boot(launchers[0])
    starts = asyncio.run(startup.measure(launchers, spec, tensor, 2 if ctx.quick else 5))
    return {
        "boot": asdict(booted),
        "warmup_calls": spec.warmup_calls,
        "starts": {method: [asdict(s) for s in found] for method, found in starts.items()},
    }


def render_startup(ctx: Context, results: dict[str, Any]) -> Part:
    milestones = ("launched", "ready", "first_result")
    medians = {
        method: {m: statistics.median(s[m] for s in starts) for m in milestones}
        for method, starts in results["starts"].items()
    }
    fork, spawn = medians["forkserver"], medians["spawn"]
    rows = [[method, *(f"{v[m]:.3f}" for m in milestones)] for method, v in medians.items()]
    rows.append(["spawn / forkserver", *(f"{spawn[m] / fork[m]:.1f}x" for m in milestones)])
    figure = plots.bars(
        ctx.figure("startup.png"),
        "Worker start, resnet18 (median seconds from the start request)",
        "s",
        ["process created", "ready (loaded + warm)", "first result"],
        {method: [v[m] for m in milestones] for method, v in medians.items()},
        points={
            method: [[s[m] for s in starts] for m in milestones]
            for method, starts in results["starts"].items()
        },
        log=True,
    )
    n = len(results["starts"]["forkserver"])
    lines = [
        "Each start goes through autodep's `WorkerHandle` (`bench/startup.py`): the process "
        f"is created, loads the model and runs {results['warmup_calls']} warm-up calls "
        "(**ready**), then answers one real request (**first result**). The baseline "
        "starts the same worker with multiprocessing's `spawn`, which imports torch in "
        f"every new process. {n} starts of each, alternating; the dots are single starts.",
        "",
        *table(["launcher", "created s", "ready s", "first result s"], rows),
        "",
        f"The forkserver's one-time boot (it imports torch and torchvision before the first "
        f"worker): {results['boot']['preloaded']:.2f} s.",
        "",
        f"![startup]({figure.name})",
    ]
    goal = Goal(
        f"a forkserver worker is ready in < {READY_TARGET_S} s",
        f"{fork['ready']:.3f} s",
        fork["ready"] < READY_TARGET_S,
        load_note(
            "Loading and warming the model are CPU work that other jobs on the two cores "
            "slow down; the spawn baseline slowed by a similar factor, so the ratio holds"
        ),
    )
    return Part(lines, [goal])
