"""The micro-benchmarks of bench.transport, bench.startup and bench.latency under pytest-benchmark.

    pytest bench/ --benchmark-only                       # a table per group
    pytest bench/ --benchmark-only --benchmark-autosave  # then, later, on the same machine:
    pytest bench/ --benchmark-only --benchmark-compare   # against the last saved run
    pytest bench/ --benchmark-only --benchmark-json out.json

Each benchmark times the function its script times (the scripts print ratios
against the baseline; here each side is its own benchmark, grouped with its
baseline, so `--benchmark-compare` tracks both):

    transport  `Echo.round_trip` of a 1x3x224x224 float32 tensor: shared memory +
               msgpack (autodep) and pickle through a Pipe (baseline)
    startup    `one_start`: a resnet18 worker from start request to its first
               result, forkserver (autodep) and spawn (baseline); each start's
               milestones are in `extra_info`
    latency    one request at a time: `InProcess` (decode, resnet18, top-5 in this
               process) and a POST to `python -m autodep.serve --optimize off`
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from bench import startup, transport
from bench.common import InProcess, make_jpeg, make_resnet18, model_config
from bench.server import ServerProcess

THREADS = len(os.sched_getaffinity(0))
START_ROUNDS = 3  # worker starts per launcher (a spawn start takes seconds)
REQUEST_ROUNDS = 30


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for the module's async calls (worker handles, aiohttp)."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_resnet18(tmp_path_factory.mktemp("bench"))


# -- transport --------------------------------------------------------------------


@pytest.fixture(scope="module")
def echoes() -> Iterator[dict[str, transport.Echo]]:
    made = transport.make_echoes(multiprocessing.get_context("spawn"))
    yield {echo.name: echo for echo in made}
    for echo in made:
        echo.close()


@pytest.mark.parametrize("method", ["shm + msgpack", "pickle + Pipe"])
def test_transport(benchmark: Any, echoes: dict[str, transport.Echo], method: str) -> None:
    echo, array = echoes[method], transport.make_tensor(1)
    transport.check(echo, array, warmup=20)
    benchmark.group = "transport: tensor round trip 1x3x224x224 fp32"
    back = benchmark(echo.round_trip, array)
    assert np.array_equal(back, array)


# -- startup ----------------------------------------------------------------------


@pytest.mark.timeout(600)
@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_worker_start(
    benchmark: Any, loop: asyncio.AbstractEventLoop, model: Path, method: startup.Method
) -> None:
    spec, tensor = startup.worker_spec(model, THREADS)
    launcher = startup.TimedLauncher(method)
    if method == "forkserver":  # its one-time boot (importing torch) is not a start
        benchmark.extra_info["boot_s"] = startup.boot(launcher).preloaded
    starts: list[startup.Start] = []

    def one_start() -> None:
        starts.append(loop.run_until_complete(startup.one_start(launcher, spec, tensor)))

    benchmark.group = "startup: worker start to first result, resnet18"
    benchmark.pedantic(one_start, rounds=START_ROUNDS, iterations=1)
    for field in startup.Start.__dataclass_fields__:
        benchmark.extra_info[f"median_{field}_s"] = float(
            np.median([getattr(s, field) for s in starts])
        )


# -- latency ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_url(model: Path) -> Iterator[str]:
    flags = ["--model", str(model), "--optimize", "off"]  # the file as given, as in-process
    with ServerProcess("micro", flags, model.with_name("server.log")) as server:
        yield server.url()


@pytest.fixture(scope="module")
def session(loop: asyncio.AbstractEventLoop) -> Iterator[aiohttp.ClientSession]:
    async def open_session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    session = loop.run_until_complete(open_session())
    yield session
    loop.run_until_complete(session.close())


async def post(session: aiohttp.ClientSession, url: str, jpeg: bytes) -> dict[str, Any]:
    headers = {"Content-Type": "image/jpeg"}
    async with session.post(f"{url}/predict", data=jpeg, headers=headers) as response:
        answer: dict[str, Any] = await response.json()
        assert response.status == 200, answer
        return answer


def test_latency_in_process(benchmark: Any, model: Path) -> None:
    predict, jpeg = InProcess(model_config(model, 224)), make_jpeg()
    for _ in range(5):  # warm-up, as the worker does before it is ready
        predict(jpeg)
    benchmark.group = "latency: one request at a time, resnet18"
    answers, _ = benchmark.pedantic(predict, args=(jpeg,), rounds=REQUEST_ROUNDS, iterations=1)
    assert len(answers[0]["predictions"]) == 5


def test_latency_http(
    benchmark: Any, loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession, server_url: str
) -> None:
    jpeg = make_jpeg()

    def request() -> dict[str, Any]:
        return loop.run_until_complete(post(session, server_url, jpeg))

    for _ in range(5):
        request()
    benchmark.group = "latency: one request at a time, resnet18"
    answer = benchmark.pedantic(request, rounds=REQUEST_ROUNDS, iterations=1)
    assert len(answer["predictions"]) == 5
