"""Models at runtime: reloads under constant load, and memory after load/unload cycles.

    server    python -m autodep.serve --model-control-mode explicit --model v1/resnet18.pt
              --max-workers 1 --max-total-workers 2 (a subprocess, port 0)
    load      CONCURRENCY aiohttp clients posting a JPEG to /predict/resnet18, each
              sending its next request when the last is answered
    phase 1   BASELINE seconds of that load, no reload
    phase 2   DURATION seconds of the same load with a reload every PERIOD seconds,
              alternating between two resnet18 files (POST /v2/repository/models/
              resnet18/load with {"parameters": {"config": "{\"path\": ...}"}})
    memory    the server's and its workers' RSS with the model serving; after
              loading a second model ("extra"); after CYCLES load/unload cycles of it

A request counts as "during a reload" if it overlaps the time from a load
request being sent to half a second after its answer (the old version drains
in that time). Failed: any answer but 200, or no answer.

    python -m bench.rollout [--quick] [--duration S] [--period S] [--cycles N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import psutil

from bench.common import make_jpeg, make_resnet18, print_header, print_table
from bench.server import ServerProcess

CONCURRENCY = 4
DRAIN_MARGIN = 0.5  # seconds after a load's answer still counted as "during the reload"


@dataclass(frozen=True)
class Sample:
    start: float
    end: float
    status: int  # 0: no answer


@dataclass(frozen=True)
class Memory:
    server: int
    workers: int

    @property
    def total(self) -> int:
        return self.server + self.workers


async def constant_load(
    session: aiohttp.ClientSession, url: str, body: bytes, until: float
) -> list[Sample]:
    samples: list[Sample] = []

    async def client() -> None:
        while (start := time.monotonic()) < until:
            try:
                async with session.post(
                    url, data=body, headers={"Content-Type": "image/jpeg"}
                ) as response:
                    await response.read()
                    status = response.status
            except aiohttp.ClientError:
                status = 0
            samples.append(Sample(start, time.monotonic(), status))

    await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    return samples


async def reloads(
    session: aiohttp.ClientSession, base: str, files: list[Path], period: float, until: float
) -> list[tuple[float, float, int]]:
    """A reload every `period` seconds (or right after the last, if it took longer)."""
    windows = []
    due = time.monotonic()
    while due < until:
        await asyncio.sleep(max(0.0, due - time.monotonic()))  # the schedule, not a state wait
        config = json.dumps({"path": str(files[len(windows) % len(files)])})
        start = time.monotonic()
        async with session.post(
            f"{base}/v2/repository/models/resnet18/load",
            json={"parameters": {"config": config}},
        ) as response:
            await response.read()
            windows.append((start, time.monotonic(), response.status))
        due += period
    return windows


def worker_rss(server_pid: int) -> Memory:
    """The server's RSS, and its workers' (children of the forkserver)."""
    server = psutil.Process(server_pid)
    workers = 0
    for child in server.children(recursive=True):
        try:
            parent = child.parent()
            if parent is not None and parent.pid != server_pid:  # forked by the forkserver
                workers += child.memory_info().rss
        except psutil.Error:
            continue
    return Memory(server.memory_info().rss, workers)


async def post(session: aiohttp.ClientSession, url: str, body: object) -> int:
    async with session.post(url, json=body) as response:
        await response.read()
        return response.status


def p(samples: list[Sample], q: float) -> str:
    if not samples:
        return "-"
    return f"{np.percentile([s.end - s.start for s in samples], q) * 1e3:.1f}"


def overlaps(sample: Sample, windows: list[tuple[float, float, int]]) -> bool:
    return any(
        sample.start < end + DRAIN_MARGIN and sample.end > start for start, end, _ in windows
    )


async def run(args: argparse.Namespace, directory: Path) -> None:
    files = []
    for name in ("v1", "v2"):
        (directory / name).mkdir()
        files.append(make_resnet18(directory / name))
    body = make_jpeg()
    flags = [
        "--model", str(files[0]),
        "--model-control-mode", "explicit",
        "--max-workers", "1",
        "--max-total-workers", "2",
        "--idle-timeout", "600",
    ]  # fmt: skip
    with ServerProcess("rollout", flags, directory / "server.log") as server:
        base = server.url()
        predict = f"{base}/predict/resnet18"
        async with aiohttp.ClientSession() as session:
            await constant_load(session, predict, body, time.monotonic() + 2)  # warm the path
            quiet = await constant_load(session, predict, body, time.monotonic() + args.baseline)
            until = time.monotonic() + args.duration
            loaded, windows = await asyncio.gather(
                constant_load(session, predict, body, until),
                reloads(session, base, files, args.period, until),
            )
            during = [s for s in loaded if overlaps(s, windows)]
            between = [s for s in loaded if not overlaps(s, windows)]
            rows = [
                ["no reload (phase 1)", quiet],
                ["reload phase, during reloads", during],
                ["reload phase, between reloads", between],
            ]
            print_table(
                ["requests", "count", "failed", "p50 ms", "p99 ms"],
                [
                    [label, str(len(s)), str(sum(x.status != 200 for x in s)), p(s, 50), p(s, 99)]
                    for label, s in rows
                ],
            )
            took = [end - start for start, end, _ in windows]
            print(
                f"\n{len(windows)} reloads in {args.duration:g} s, "
                f"{sum(code != 200 for *_, code in windows)} refused; each took "
                f"{min(took):.2f}-{max(took):.2f} s (median {np.median(took):.2f} s) "
                "from the load request to its answer\n"
            )

            # Memory: let the last retired version finish draining first.
            index_url = f"{base}/v2/repository/index"
            await _until_settled(session, index_url)
            before = worker_rss(server.pid)
            extra = json.dumps({"name": "extra", "path": str(files[1])})
            after_load: Memory | None = None
            for _ in range(args.cycles):
                load = {"parameters": {"config": extra}}
                assert await post(session, f"{base}/v2/repository/models/extra/load", load) == 200
                after_load = after_load or worker_rss(server.pid)
                assert await post(session, f"{base}/v2/repository/models/extra/unload", {}) == 200
            after = worker_rss(server.pid)
            assert after_load is not None
            mib = 1 << 20
            print_table(
                ["RSS MiB", "server", "workers", "total", "vs before"],
                [
                    [label, f"{m.server / mib:.0f}", f"{m.workers / mib:.0f}",
                     f"{m.total / mib:.0f}", f"{m.total / before.total:.3f}x"]
                    for label, m in (
                        ("before (resnet18 serving)", before),
                        ("after loading extra", after_load),
                        (f"after {args.cycles} load/unload cycles", after),
                    )
                ],
            )  # fmt: skip


async def _until_settled(session: aiohttp.ClientSession, url: str) -> None:
    """Wait (at most a minute) until no version is loading or unloading."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        async with session.post(url) as response:
            index = await response.json()
        if all(entry["state"] in ("READY", "UNAVAILABLE") for entry in index):
            return
        await asyncio.sleep(0.1)  # a poll with a deadline
    raise RuntimeError(f"versions still changing after a minute: {index}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rollout", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="6 s with reloads, 3 cycles")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds with reloads")
    parser.add_argument("--baseline", type=float, default=15.0, help="seconds without")
    parser.add_argument("--period", type=float, default=3.0, help="seconds between reloads")
    parser.add_argument("--cycles", type=int, default=10, help="load/unload cycles")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.baseline, args.cycles = 6.0, 3.0, 3
    mode = "quick" if args.quick else "full"
    print_header("Models at runtime: reloads under load, memory after unloads", mode)
    with tempfile.TemporaryDirectory(prefix="autodep-rollout-") as directory:
        asyncio.run(run(args, Path(directory)))


if __name__ == "__main__":
    main()
