"""`python -m bench.cluster`: autodep across Ray nodes on this machine.

1. Latency at concurrency 1 of a request served on its own node against one
   forwarded to the other node (the model runs only on node 1; the same
   requests go once through node 1's front end, once through node 0's).
2. Throughput of 2 nodes each pinned to one core against 1 node on one core
   (clients spread over the front ends; one worker per core, no batching).
3. Recovery: 3 nodes (node 0 holds no worker: its CPU budget is 0); the only
   worker of the model runs on node 1 or 2; that node's raylet is killed while
   a client sends one request at a time through node 0; reported: the time from
   the kill to the controller's notice and to the first answer served elsewhere.

Timings on a shared 2-core machine are noisy: compare the rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import aiohttp
import numpy as np

from autodep.cluster.local import LocalCluster, NodeSpec
from autodep.loadtest.payloads import default_jpeg
from autodep.testing.server import ClusterServer
from bench.common import cpu_model, ms, print_table, ratio
from tests import models  # the tests' small scripted models

JPEG = default_jpeg()


def write_models(directory: Path, placement: str = "", slow_min: int = 0) -> Path:
    """`fast` (ColorNet, one worker) and `slow` (about 30-60 ms of matmuls per call)."""
    models.save(models.ColorNet(), directory / "fast.pt")
    models.save(models.SlowColorNet(iterations=60), directory / "slow.pt")
    config = directory / "models.yaml"
    config.write_text(
        "models:\n"
        "  - {name: fast, path: fast.pt, workers: {min: 1}}\n"
        f"  - {{name: slow, path: slow.pt, workers: {{min: {slow_min}}},"
        " batching: {max_batch_size: 1}}\n"
        + (f"cluster:\n  placement: {placement}\n" if placement else "")
    )
    return config


def server_env(cluster: LocalCluster) -> dict[str, str]:
    # The models as given: freezing would fold SlowColorNet's matmuls (weights only) away.
    return {
        **cluster.env,
        "PYTHONPATH": os.getcwd(),
        "AUTODEP_LOG_LEVEL": "INFO",
        "AUTODEP_OPTIMIZE": "off",
    }


async def post(session: aiohttp.ClientSession, url: str) -> int:
    async with session.post(url, data=JPEG, headers={"Content-Type": "image/jpeg"}) as response:
        await response.read()
        return response.status


async def latencies(url: str, count: int) -> list[float]:
    async with aiohttp.ClientSession() as session:
        for _ in range(20):  # warm-up: workers, connections, Ray's channels
            await post(session, url)
        times = []
        for _ in range(count):
            began = time.perf_counter()
            assert await post(session, url) == 200
            times.append(time.perf_counter() - began)
        return times


async def throughput(urls: Sequence[str], clients: int, seconds: float) -> float:
    """Answers per second with `clients` closed-loop clients spread over `urls`."""
    done = 0
    async with aiohttp.ClientSession() as session:

        async def client(url: str, until: float) -> None:
            nonlocal done
            while time.monotonic() < until:
                if await post(session, url) == 200:
                    done += 1

        warm = time.monotonic() + 3
        await asyncio.gather(*(client(urls[i % len(urls)], warm) for i in range(clients)))
        done = 0
        began = time.monotonic()
        until = began + seconds
        await asyncio.gather(*(client(urls[i % len(urls)], until) for i in range(clients)))
        return done / (time.monotonic() - began)


def local_vs_forwarded(directory: Path, count: int) -> list[list[str]]:
    config = write_models(directory, "{fast: [b]}")
    with LocalCluster([NodeSpec(cpus=1), NodeSpec(cpus=1, resources={"b": 1})]) as cluster:
        server = ClusterServer(["--config", str(config)], server_env(cluster))
        try:
            first, second = cluster.node_ids
            here = asyncio.run(latencies(server.urls[second] + "/predict/fast", count))
            there = asyncio.run(latencies(server.urls[first] + "/predict/fast", count))
        finally:
            server.stop()
    p50_here, p50_there = float(np.median(here)), float(np.median(there))
    return [
        ["served on its own node", ms(p50_here), ms(float(np.percentile(here, 99))), "1.00x"],
        [
            "forwarded to the other node",
            ms(p50_there),
            ms(float(np.percentile(there, 99))),
            ratio(p50_there, p50_here),
        ],
    ]


def scale_out(directory: Path, clients: int, seconds: float) -> list[list[str]]:
    config = write_models(directory, slow_min=2)  # one worker per node (its one CPU)
    rows, rates = [], []
    one = [NodeSpec(cpus=1, cpu_list=[0])]
    two = [NodeSpec(cpus=1, cpu_list=[0]), NodeSpec(cpus=1, cpu_list=[1])]
    for specs in (one, two):
        with LocalCluster(specs) as cluster:
            server = ClusterServer(["--config", str(config)], server_env(cluster))
            try:
                urls = [u + "/predict/slow" for u in server.urls.values()]
                rates.append(asyncio.run(throughput(urls, clients, seconds)))
            finally:
                server.stop()
        label = f"{len(specs)} node{'s' if len(specs) > 1 else ''}, one core each"
        rows.append([label, f"{rates[-1]:.1f}", ratio(rates[-1], rates[0])])
    return rows


def recovery(directory: Path) -> list[list[str]]:
    config = write_models(directory)
    specs = [NodeSpec(cpus=0), NodeSpec(cpus=1), NodeSpec(cpus=1)]
    with LocalCluster(specs) as cluster:
        server = ClusterServer(["--config", str(config)], server_env(cluster))
        try:
            entry = server.urls[cluster.node_ids[0]]
            victim = asyncio.run(_worker_node(entry, "fast"))
            killed, answers = asyncio.run(_kill_under_requests(cluster, entry, victim))
            noticed = _loss_noticed(server.lines)
        finally:
            server.stop()
    around = [(sent, answered, code) for sent, answered, code in answers if answered > killed]
    longest = max(answered - sent for sent, answered, _ in around)
    failed = sum(1 for *_, code in around if code != 200)
    return [
        ["kill → the controller drops the node", ms(noticed - killed) if noticed else "-"],
        ["longest wait of a request across the kill", ms(longest)],
        ["requests answered / failed after the kill", f"{len(around) - failed} / {failed}"],
    ]


async def _worker_node(url: str, model: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url + "/status") as response:
        status = await response.json()
    nodes = {w["node"] for w in status["models"][model]["workers"]}
    assert len(nodes) == 1, status
    return nodes.pop()


async def _kill_under_requests(
    cluster: LocalCluster, url: str, victim: str
) -> tuple[float, list[tuple[float, float, int]]]:
    """One request at a time through `url` while the victim is killed: (kill time, requests)."""
    index = cluster.node_ids.index(victim)
    answers: list[tuple[float, float, int]] = []  # (sent, answered, status), wall clock
    async with aiohttp.ClientSession() as session:
        for _ in range(20):
            await post(session, url + "/predict/fast")

        async def client(until: asyncio.Event) -> None:
            while not until.is_set():
                sent = time.time()
                status = await post(session, url + "/predict/fast")
                answers.append((sent, time.time(), status))

        done = asyncio.Event()
        task = asyncio.ensure_future(client(done))
        await asyncio.sleep(0.5)  # requests flowing before the kill
        killed = time.time()
        await asyncio.to_thread(cluster.kill_node, index)
        await asyncio.sleep(3.0)  # and for a while after it
        done.set()
        await task
    return killed, answers


def _loss_noticed(log: Sequence[str], timeout: float = 30.0) -> float | None:
    """When the driver logged the node lost (its log is read by a thread: poll it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(log):
            if "placed on the other nodes" in line and (match := re.match(r"(\S+ \S+) ", line)):
                return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        time.sleep(0.1)
    return None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests, shorter runs")
    parser.add_argument(
        "--part", choices=["latency", "throughput", "recovery"], action="append", help="only these"
    )
    args = parser.parse_args(argv)
    parts = set(args.part or ["latency", "throughput", "recovery"])
    count, seconds = (100, 5.0) if args.quick else (300, 15.0)
    print(f"# autodep across Ray nodes on one machine ({cpu_model()}, {os.cpu_count()} cores)\n")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        if "latency" in parts:
            print("## c=1 latency (ms), ColorNet, a 224x224 JPEG (loadtest default_jpeg)\n")
            rows = local_vs_forwarded(directory, count)
            print_table(["request", "p50", "p99", "vs own node"], rows)
        if "throughput" in parts:
            print("\n## throughput, SlowColorNet, no batching, 8 clients over the front ends\n")
            print_table(["cluster", "answers/s", "vs 1 node"], scale_out(directory, 8, seconds))
        if "recovery" in parts:
            print("\n## a node's death (its processes, raylet included, SIGKILLed)\n")
            print_table(["interval", "ms"], recovery(directory))


if __name__ == "__main__":
    main()
