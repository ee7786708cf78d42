"""Faults and overload against a real server: each figure with its goal, met or not.

    crash     2 workers (min = max = 2), closed-loop clients, one worker kill -9'd
              every few seconds: failed requests (goal 0), replacements per death (goal 1)
    overload  the optimized model (--optimize auto), 2 workers, --max-queue 64 (8 quick):
              closed-loop clients at the base concurrency (32), then at 8x it (256);
              goodput ratio (goal >= 0.85), the server process's CPU ms per refused
              request, cores busy (server / workers / load generator), 503 latency
              p50 / p99 (goal: p50 below the accepted p50) with Retry-After, accepted
              requests' p99 against the queue bound, RSS of server + workers before
              and at the peak
    soak      N requests; RSS of server and workers, open file descriptors of the
              server, at the start and at the end (goal: growth within noise)

Each section runs its own `python -m autodep.serve` subprocess (bench.server) on
port 0; clients are aiohttp sessions with one connection per client, except in
the overload section: there the lean generator of bench.loadgen (a request made
once, a status read back), whose CPU is reported beside the server's and the
workers' since it shares the machine's cores with them. The model
is `--model` (a TorchScript image classifier), or an untrained torchvision
resnet18 scripted into a temporary directory.

    python -m bench.faults [--model m.pt] [--quick] [--sections crash,overload,soak]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psutil

from bench.common import Param, make_jpeg, make_resnet18, parse_args, print_header, print_table
from bench.loadgen import post_loop
from bench.server import ServerProcess

PARAMS = [
    Param("crash_seconds", 20, 6, "seconds of load while workers are killed"),
    Param("crash_clients", 8, 8, "closed-loop clients while workers are killed"),
    Param("kill_every_ms", 2000, 2000, "milliseconds between two kills"),
    Param("overload_seconds", 20, 5, "seconds of load per concurrency"),
    Param("base_clients", 32, 4, "concurrency whose throughput is the goodput baseline"),
    Param("overload_factor", 8, 8, "overload concurrency as a multiple of the baseline"),
    Param("max_queue", 64, 8, "the overload section's --max-queue"),
    Param("optimize_budget", 300, 0, "seconds of the overload's optimization search (0: off)"),
    Param("soak_requests", 20000, 500, "requests of the soak"),
    Param("soak_clients", 8, 8, "closed-loop clients of the soak"),
]
SECTIONS = ("crash", "overload", "soak")
WORKERS = ["--min-workers", "2", "--max-workers", "2"]
WAIT = ["--optimize-wait", "on"]  # searched before serving: not the file as given beside a search
READY_TIMEOUT = 60.0  # seconds for killed workers to be replaced once the load stops
SAMPLE_S = 0.25  # memory sampling period during the overload


# -- load ----------------------------------------------------------------------


@dataclass
class Answers:
    """What closed-loop clients got back: status, latency, Retry-After per request."""

    statuses: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    retry_after: list[bool] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # transport errors: no status at all
    failures: list[str] = field(default_factory=list)  # the first answers other than 200 or 503
    elapsed: float = 0.0

    def count(self, status: int) -> int:
        return self.statuses.count(status)

    def latencies_of(self, status: int) -> np.ndarray:
        return np.asarray(
            [t for s, t in zip(self.statuses, self.latencies, strict=True) if s == status]
        )

    def per_s(self, status: int = 200) -> float:
        return self.count(status) / self.elapsed if self.elapsed else 0.0


async def closed_loop(
    session: aiohttp.ClientSession,
    url: str,
    jpeg: bytes,
    clients: int,
    *,
    seconds: float = 0.0,
    requests: int = 0,
) -> Answers:
    """`clients` clients, each sending its next request when the last is answered."""
    answers = Answers()
    deadline = time.perf_counter() + seconds
    headers = {"Content-Type": "image/jpeg"}
    budget = [requests]

    def more() -> bool:
        if requests:
            budget[0] -= 1
            return budget[0] >= 0
        return time.perf_counter() < deadline

    async def client() -> None:
        while more():
            began = time.perf_counter()
            try:
                async with session.post(f"{url}/predict", data=jpeg, headers=headers) as reply:
                    body = await reply.read()
                    status, retry = reply.status, "Retry-After" in reply.headers
                if status not in (200, 503) and len(answers.failures) < 5:
                    answers.failures.append(f"{status} {body[:200].decode(errors='replace')}")
            except aiohttp.ClientError as exc:
                answers.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            answers.statuses.append(status)
            answers.latencies.append(time.perf_counter() - began)
            answers.retry_after.append(retry)

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    answers.elapsed = time.perf_counter() - began
    return answers


def session_for(clients: int) -> aiohttp.ClientSession:
    """A client session with at most one connection per client."""
    timeout = aiohttp.ClientTimeout(total=120)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=clients, limit_per_host=clients), timeout=timeout
    )


async def status(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(f"{url}/status") as reply:
        body: dict[str, Any] = await reply.json()
    (model,) = body["models"].values()
    return model  # type: ignore[no-any-return]


async def until(
    condition: Callable[[], Any], timeout: float, what: str, period: float = 0.05
) -> Any:
    """Poll `condition` (a coroutine function) until it returns something true."""
    deadline = time.monotonic() + timeout
    while not (result := await condition()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(period)
    return result


# -- processes -----------------------------------------------------------------


def workers_of(server: ServerProcess) -> list[psutil.Process]:
    """The worker processes: what runs under the server's forkserver.

    A forked worker has the forkserver's command line, so it is found by its parent.
    """
    found = []
    for child in psutil.Process(server.pid).children():
        with contextlib.suppress(psutil.Error):
            if "forkserver" in " ".join(child.cmdline()):
                found += child.children(recursive=True)
    return found


@dataclass(frozen=True)
class Memory:
    server_rss: int
    workers_rss: int
    server_fds: int

    @classmethod
    def of(cls, server: ServerProcess) -> Memory:
        process = psutil.Process(server.pid)
        workers = 0
        for worker in workers_of(server):
            with contextlib.suppress(psutil.Error):  # it may have just exited
                workers += worker.memory_info().rss
        return cls(process.memory_info().rss, workers, process.num_fds())

    @property
    def total(self) -> int:
        return self.server_rss + self.workers_rss


def cpu_s(server: ServerProcess) -> float:
    """CPU seconds the server process (not its workers) has used."""
    return _cpu(psutil.Process(server.pid))


@dataclass(frozen=True)
class Cpu:
    """CPU seconds used so far by the server process, its workers and this load generator."""

    server: float
    workers: float
    clients: float

    @classmethod
    def of(cls, server: ServerProcess) -> Cpu:
        workers = 0.0
        for worker in workers_of(server):
            with contextlib.suppress(psutil.Error):
                workers += _cpu(worker)
        return cls(cpu_s(server), workers, _cpu(psutil.Process()))

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(
            self.server - other.server, self.workers - other.workers, self.clients - other.clients
        )

    def shares(self, seconds: float) -> str:
        """Cores busy on average over `seconds`: server / workers / load generator."""
        return " / ".join(f"{s / seconds:.2f}" for s in (self.server, self.workers, self.clients))


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def mb(size: float) -> str:
    return f"{size / 2**20:.0f} MB"


# -- report --------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.rows: list[list[str]] = []

    def add(self, section: str, figure: str, value: str, goal: str, met: bool | None) -> None:
        verdict = "-" if met is None else ("met" if met else "NOT MET")
        self.rows.append([section, figure, value, goal, verdict])

    def print(self) -> None:
        print_table(["section", "figure", "measured", "goal", ""], self.rows)


# -- sections ------------------------------------------------------------------


async def crash(
    model: Path, jpeg: bytes, args: argparse.Namespace, logs: Path, report: Report
) -> None:
    """Kill -9 a worker every kill_every_ms under closed-loop load."""
    flags = ["--model", str(model), *WORKERS]
    with ServerProcess("crash", flags, logs / "server-crash.log") as server:
        url = server.url()
        # The killer has its own connection: the clients' pool is always in use.
        async with session_for(args.crash_clients) as session, session_for(1) as control:
            await closed_loop(session, url, jpeg, args.crash_clients, seconds=2)  # warm-up
            killed: list[int] = []

            async def killer() -> None:
                deadline = time.perf_counter() + args.crash_seconds
                while time.perf_counter() + args.kill_every_ms / 1000 < deadline:
                    await asyncio.sleep(args.kill_every_ms / 1000)  # the schedule of kills
                    workers = (await status(control, url))["workers"]
                    ready = [w for w in workers if w["state"] in ("busy", "idle")]
                    ready = [w for w in ready if w["pid"] not in killed]
                    if ready:  # prefer a busy worker: its batch must be retried elsewhere
                        victim = max(ready, key=lambda w: w["state"] == "busy")
                        os.kill(victim["pid"], signal.SIGKILL)
                        killed.append(victim["pid"])

            load = closed_loop(session, url, jpeg, args.crash_clients, seconds=args.crash_seconds)
            answers, _ = await asyncio.gather(load, killer())

            async def recovered() -> dict[str, Any] | None:
                model_status = await status(session, url)
                live = [w for w in model_status["workers"] if w["state"] in ("busy", "idle")]
                done = len(live) == 2 and model_status["restarts"] >= len(killed)
                return model_status if done else None

            final = await until(recovered, READY_TIMEOUT, "the killed workers' replacements")
    log = "\n".join(server.lines)
    started = log.count(" ready in ")
    scale_downs = log.count("(scaling down)")
    failed = len(answers.statuses) - answers.count(200) + len(answers.errors)
    total = len(answers.statuses) + len(answers.errors)
    kills = len(killed)
    per_death = (started - 2) / kills if kills else float("nan")
    print(
        f"crash: {total} requests in {answers.elapsed:.1f} s ({answers.per_s():.1f}/s), "
        f"{kills} kills, restarts {final['restarts']}, workers started {started}, "
        f"stopped as scaling down {scale_downs}"
    )
    for failure in answers.failures + answers.errors[:5]:
        print(f"  failed: {failure}")
    report.add("crash", "failed requests", f"{failed} of {total}", "0", failed == 0)
    report.add(
        "crash",
        "replacements per death",
        f"{per_death:.2f} ({started - 2} for {kills})",
        "1",
        per_death == 1 and scale_downs == 0,
    )


async def overload(
    model: Path, jpeg: bytes, args: argparse.Namespace, logs: Path, report: Report
) -> None:
    """Throughput at the base concurrency, then goodput and 503s at overload_factor x it."""
    optimize = (
        # Searched before it serves: a first start would otherwise serve the file as given
        # while the search runs beside the load.
        ["--optimize", "auto", "--optimize-budget", str(args.optimize_budget), *WAIT]
        if args.optimize_budget
        else ["--optimize", "off"]
    )
    flags = ["--model", str(model), *WORKERS, "--max-queue", str(args.max_queue), *optimize]
    peak_clients = args.base_clients * args.overload_factor
    with ServerProcess("overload", flags, logs / "server-overload.log") as server:
        url = server.url()
        async with session_for(peak_clients) as session:
            await closed_loop(session, url, jpeg, args.base_clients, seconds=2)  # warm-up
            plan = (await status(session, url))["plan"]
            print(
                f"overload: serving {plan['variant'] or 'as given'}, {plan['workers']} workers x "
                f"{plan['threads_per_worker']} threads on {plan['cores']}, batch "
                f"{plan['max_batch_size']}, delay {plan['max_queue_delay_ms']} ms"
            )
            before = Memory.of(server)
            cpu_start = Cpu.of(server)
            # The lean generator (bench.loadgen): it shares the 2 cores with the server.
            base = await post_loop(url, jpeg, args.base_clients, seconds=args.overload_seconds)
            cpu_base = Cpu.of(server) - cpu_start
            peak = [before]
            sampling = True

            async def sample() -> None:
                while sampling:
                    peak.append(Memory.of(server))
                    await asyncio.sleep(SAMPLE_S)  # the sampling period

            sampler = asyncio.ensure_future(sample())
            cpu_start = Cpu.of(server)
            over = await post_loop(url, jpeg, peak_clients, seconds=args.overload_seconds)
            cpu_over = Cpu.of(server) - cpu_start
            sampling = False
            await sampler
    top = max(peak, key=lambda m: m.total)
    refused = np.asarray(over.refusals)
    accepted = np.asarray(over.latencies)
    ratio = over.ok_per_s / base.ok_per_s if base.ok_per_s else 0.0
    print(
        f"overload: {args.base_clients} clients {base.ok_per_s:.1f} req/s "
        f"(p50 {base.percentile(50) * 1e3:.0f} ms); {peak_clients} clients "
        f"{over.ok_per_s:.1f} req/s goodput, {len(refused)} x 503, "
        f"other statuses {sorted(set(over.statuses) - {200, 503})}"
    )
    report.add(
        "overload",
        f"goodput at {peak_clients} / at {args.base_clients} clients",
        f"{ratio:.2f} ({over.ok_per_s:.1f} / {base.ok_per_s:.1f} req/s)",
        ">= 0.85",
        ratio >= 0.85,
    )
    # The server's CPU beyond what the accepted requests cost at the base concurrency,
    # spread over the refusals: what a 503 costs the process that also feeds the workers.
    per_accepted = cpu_base.server / len(base.latencies) if base.latencies else 0.0
    report.add(
        "overload",
        "cores busy: server / workers / load generator",
        f"{cpu_base.shares(base.elapsed)} at {args.base_clients}, "
        f"{cpu_over.shares(over.elapsed)} at {peak_clients} clients",
        "workers keep theirs",
        None,
    )
    if len(refused):
        spent = max(0.0, cpu_over.server - per_accepted * len(accepted)) / len(refused)
        report.add(
            "overload",
            "server CPU per refused request",
            f"{spent * 1e3:.2f} ms ({per_accepted * 1e3:.2f} ms per accepted)",
            "next to nothing",
            None,
        )
    refused_p50 = float(np.percentile(refused, 50)) if len(refused) else 0.0
    if len(refused):
        # In a closed loop the mean wait is clients / answers per second (Little's law): 256
        # clients kept waiting by a server that gives the workers the cores first. What a
        # refusal must not do is wait in the queue behind the model.
        p99 = np.percentile(refused, 99) * 1e3
        floor = peak_clients / (len(refused) + len(accepted)) * over.elapsed
        report.add(
            "overload",
            "503 latency p50 / p99 (closed-loop mean: clients / answers per s)",
            f"{refused_p50 * 1e3:.0f} / {p99:.0f} ms ({floor * 1e3:.0f} ms)",
            "p50 < accepted p50",
            len(accepted) > 0 and refused_p50 < float(np.percentile(accepted, 50)),
        )
        report.add(
            "overload",
            "503s with Retry-After",
            f"{over.retry_after} of {len(refused)}",
            "all",
            over.retry_after == len(refused),
        )
    else:
        report.add("overload", "503 answers", "none", "some, fast", None)
    if len(accepted) and over.ok_per_s:
        # Admitted behind a full queue, a request waits for max_queue others (queued, or held
        # by a busy worker as its next batch) and the batches running, at the goodput; before
        # that it waited to be read, as a refusal does.
        running = plan["workers"] * plan["max_batch_size"]
        bound = (args.max_queue + running) / over.ok_per_s + refused_p50
        p99 = float(np.percentile(accepted, 99))
        report.add(
            "overload",
            "accepted p50 / p99 vs the queue bound",
            f"{np.percentile(accepted, 50) * 1e3:.0f} / {p99 * 1e3:.0f} ms vs {bound * 1e3:.0f} ms",
            "p99 <= the bound",
            p99 <= bound,
        )
    report.add(
        "overload",
        "RSS server + workers, before / peak",
        f"{mb(before.server_rss)} + {mb(before.workers_rss)} / "
        f"{mb(top.server_rss)} + {mb(top.workers_rss)}",
        "bounded",
        None,
    )


async def soak(
    model: Path, jpeg: bytes, args: argparse.Namespace, logs: Path, report: Report
) -> None:
    """Many requests; memory and descriptors at the start and at the end."""
    flags = ["--model", str(model), *WORKERS]
    with ServerProcess("soak", flags, logs / "server-soak.log") as server:
        url = server.url()
        async with session_for(args.soak_clients) as session:
            # Warm up with every client connected, so the connections count at both ends.
            await closed_loop(session, url, jpeg, args.soak_clients, requests=200)
            start = Memory.of(server)
            answers = await closed_loop(
                session, url, jpeg, args.soak_clients, requests=args.soak_requests
            )
            end = Memory.of(server)
    failed = len(answers.statuses) - answers.count(200) + len(answers.errors)
    print(
        f"soak: {len(answers.statuses)} requests in {answers.elapsed:.0f} s "
        f"({answers.per_s():.1f}/s), {failed} failed"
    )
    for figure, first, last in [
        ("server RSS", start.server_rss, end.server_rss),
        ("workers' RSS", start.workers_rss, end.workers_rss),
    ]:
        growth = (last - first) / first
        report.add(
            "soak",
            f"{figure} start / end",
            f"{mb(first)} / {mb(last)} ({growth:+.1%})",
            "growth < 10%",
            growth < 0.10,
        )
    report.add(
        "soak",
        "server open fds start / end",
        f"{start.server_fds} / {end.server_fds}",
        "no growth",
        end.server_fds <= start.server_fds,
    )
    report.add("soak", "failed requests", f"{failed} of {args.soak_requests}", "0", failed == 0)


# -- main ----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, help="a TorchScript image classifier")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"which to run (default {','.join(SECTIONS)})",
    )
    return parser


async def run(model: Path, args: argparse.Namespace, logs: Path) -> Report:
    jpeg = make_jpeg()
    report = Report()
    sections = {"crash": crash, "overload": overload, "soak": soak}
    for name in args.sections.split(","):
        await sections[name](model, jpeg, args, logs, report)
    return report


def main() -> None:
    args = parse_args(__doc__ or "", PARAMS, parser=_parser())
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections: {', '.join(sorted(unknown))}")
    print_header("faults and overload against a real server", args.mode)
    with tempfile.TemporaryDirectory(prefix="autodep-faults-") as tmp:
        directory = Path(tmp)
        model = args.model or make_resnet18(directory)
        print(f"model: {model if args.model else 'resnet18 (untrained, scripted)'}")
        report = asyncio.run(run(model, args, directory))
    report.print()


if __name__ == "__main__":
    main()
