"""autodep `--optimize auto` against the expert baseline, back to back, in one run.

    models     torchvision resnet50 and resnet18 (224x224, untrained, scripted; made here) and
               the trained demo classifier (resnet18 at 48x48, `python -m examples.demo --out
               DIR`; skipped with a message if DIR/demo.yaml is absent)
    autodep    `autodep optimize` in a fresh cache (its table is printed), then
               `autodep serve --optimize auto` from that cache, the default pool
    expert     `bench.plain_server --runtime openvino`: one aiohttp process, decode in a thread
               pool, the model converted to OpenVINO and compiled with every core and the
               LATENCY hint (bf16 where the CPU has it natively), batches of up to 8
    load       a 224x224 JPEG from closed-loop clients (bench.loadgen): c=1 p50 over
               --requests, c=32 req/s over --seconds; cores busy at c=32 = CPU seconds of the
               server and every process under it (forkserver, workers; psutil) per second
    rounds     both servers stay up; each round loads one then the other (the order swaps
               every round), so each pair runs back to back; the ratios autodep / expert are
               printed per round, with their median and spread (min-max)

Goals of issue 18 on a CPU with AMX (2 cores): resnet50 and resnet18 c=32 >= 1.5x the expert,
c=1 p50 <= 0.7x, cores busy at c=32 >= 1.85; with int8 off (--no-int8), >= 1.0x and <= 1.1x.

    python -m bench.plan [--quick] [--no-int8] [--models resnet50,resnet18,demo]
                         [--rounds N] [--seconds S] [--requests N] [--budget S] [--examples DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

from bench.common import Param, make_jpeg, ms, parse_args, print_header, print_table
from bench.loadgen import post_loop
from bench.optimize import make_model, optimize
from bench.server import ServerProcess

PARAMS = [
    Param("rounds", 3, 1, "rounds of autodep and the expert, back to back"),
    Param("seconds", 20, 3, "seconds of load at concurrency 32 per server and round"),
    Param("requests", 60, 10, "sequential requests at concurrency 1 per server and round"),
    Param("budget", 300, 120, "seconds of autodep's search per model"),
]
MODELS = ("resnet50", "resnet18", "demo")
QUICK_MODELS = ("resnet18", "demo")
CONCURRENCY = 32


@dataclass(frozen=True)
class Model:
    name: str
    autodep: list[str]  # the serve flags naming the model
    expert: list[str]  # the plain server's


@dataclass(frozen=True)
class Measured:
    p50_s: float  # c=1
    per_s: float  # c=32
    cores_busy: float  # at c=32


def tree_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of a process and of every process under it, by pid."""
    root = psutil.Process(pid)
    seconds = {}
    for process in (root, *root.children(recursive=True)):
        try:
            times = process.cpu_times()
        except psutil.Error:  # gone since the listing
            continue
        seconds[process.pid] = times.user + times.system
    return seconds


async def measure(server: ServerProcess, jpeg: bytes, args: argparse.Namespace) -> Measured:
    url = server.url()
    await post_loop(url, jpeg, CONCURRENCY, seconds=2)  # every batch size warm, workers up
    await post_loop(url, jpeg, 1, requests=5)
    lone = await post_loop(url, jpeg, 1, requests=args.requests)
    before, began = tree_cpu_s(server.pid), time.monotonic()
    loaded = await post_loop(url, jpeg, CONCURRENCY, seconds=args.seconds)
    after, elapsed = tree_cpu_s(server.pid), time.monotonic() - began
    busy = sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items()) / elapsed
    return Measured(lone.percentile(50), loaded.ok_per_s, busy)


async def served(server: ServerProcess) -> tuple[str, str]:
    """The variant the server serves (the plan's choice) and its plan in one line."""
    async with aiohttp.ClientSession() as session, session.get(f"{server.url()}/status") as reply:
        (status,) = (await reply.json())["models"].values()
    plan = status["plan"]
    cores = " ".join(",".join(map(str, c)) for c in plan["cores"]) or "-"
    summary = (
        f"{plan['source']}: {plan['workers']} worker(s) x {plan['threads_per_worker']} thread(s),"
        f" cores {cores}, lone batches on {plan['lone_request_cores']},"
        f" batch <= {plan['max_batch_size']}, delay {plan['max_queue_delay_ms']} ms"
    )
    return str(status["variant"]["name"]), summary


def models(directory: Path, args: argparse.Namespace) -> list[Model]:
    chosen = []
    for name in args.models:
        if name == "demo":
            config = args.examples / "demo.yaml"
            if not config.is_file():
                print(f"-- demo: skipped, no {config} (python -m examples.demo --out DIR)")
                continue
            path = str(args.examples / "resnet18.pt")
            expert = ["--model", path, "--size", "48"]
            chosen.append(Model("demo", ["--config", str(config)], expert))
        else:
            path = str(make_model(directory, name))
            chosen.append(Model(name, ["--model", path], ["--model", path]))
    return chosen


def compare(model: Model, directory: Path, args: argparse.Namespace) -> list[str]:
    """The model's rounds (printed) and its summary row."""
    int8 = ["--optimize-int8", "off"] if args.no_int8 else []
    cache = directory / f"cache-{model.name}"
    print(f"-- {model.name}: autodep optimize", flush=True)
    print(optimize(model.autodep, cache, args.budget, int8), flush=True)
    # --optimize-wait: should the cache miss, the server searches before it serves (never
    # measure the file as given by mistake while a background search runs).
    auto = ["--optimize", "auto", "--optimize-wait", "on", "--cache-dir", str(cache)]
    autodep_flags = [*model.autodep, *auto, *int8]
    expert_flags = [*model.expert, "--runtime", "openvino", "--max-batch-size", "8"]
    logs = directory / model.name
    jpeg = make_jpeg()
    rounds: list[dict[str, Measured]] = []
    with (
        ServerProcess("autodep", autodep_flags, logs / "autodep.log") as autodep,
        ServerProcess("expert", expert_flags, logs / "expert.log", "bench.plain_server") as expert,
    ):
        chosen, plan = asyncio.run(served(autodep))
        servers = [("autodep", autodep), ("expert", expert)]
        for number in range(args.rounds):
            order = servers if number % 2 == 0 else servers[::-1]
            rounds.append({name: asyncio.run(measure(s, jpeg, args)) for name, s in order})
    per_s = [r["autodep"].per_s / r["expert"].per_s for r in rounds]
    p50 = [r["autodep"].p50_s / r["expert"].p50_s for r in rounds]
    rows = []
    for number, measured in enumerate(rounds, 1):
        for name in ("autodep", "expert"):
            m = measured[name]
            rows.append([str(number), name, ms(m.p50_s), f"{m.per_s:.1f}", f"{m.cores_busy:.2f}"])
        ratios = [f"{p50[number - 1]:.2f}x", f"{per_s[number - 1]:.2f}x"]
        rows.append([str(number), "autodep / expert", *ratios, ""])
    print(f"-- {model.name}: autodep serves {chosen}; plan {plan}")
    print_table(["round", "server", "c=1 p50 ms", f"c={CONCURRENCY} req/s", "cores busy"], rows)
    print(flush=True)
    busy = {n: statistics.median(r[n].cores_busy for r in rounds) for n in ("autodep", "expert")}
    return [
        model.name,
        chosen,
        _spread(per_s),
        _spread(p50),
        f"{busy['autodep']:.2f} / {busy['expert']:.2f}",
    ]


def _spread(values: Sequence[float]) -> str:
    """The median of ratios and their range."""
    if len(values) == 1:
        return f"{values[0]:.2f}x"
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-int8", action="store_true", help="autodep without int8 candidates")
    parser.add_argument(
        "--models", type=lambda v: v.split(","), default=None, help=", ".join(MODELS)
    )
    parser.add_argument(
        "--examples", type=Path, default=Path("models"), help="where demo.yaml is (default models)"
    )
    args = parse_args("", PARAMS, argv, parser)
    args.models = args.models or (QUICK_MODELS if args.quick else MODELS)
    unknown = set(args.models) - set(MODELS)
    if unknown:
        parser.error(
            f"unknown models {', '.join(sorted(unknown))}; choose from {', '.join(MODELS)}"
        )
    int8 = "int8 off" if args.no_int8 else "int8 on"
    print_header(f"plan: autodep --optimize auto ({int8}) against the expert baseline", args.mode)
    with tempfile.TemporaryDirectory(prefix="autodep-plan-") as tmp:
        directory = Path(tmp)
        summary = [compare(model, directory, args) for model in models(directory, args)]
    print(f"== autodep / expert, {args.rounds} round(s): median (min-max) ==")
    print_table(
        ["model", "autodep variant", f"c={CONCURRENCY} req/s", "c=1 p50", "cores busy a / e"],
        summary,
    )


if __name__ == "__main__":
    main()
