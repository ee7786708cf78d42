"""Fixtures: small models, real servers on loopback port 0, and leak checks."""

from __future__ import annotations

import contextlib
import io
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp import web
from PIL import Image

from autodep import Autodep
from tests import models

pytest_plugins = ["tests.s3"]  # the S3 test server's fixtures

RGB = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}
# Tests serve their models as given unless they test the optimizer (tests/test_optimize.py):
# a search per fixture model would cost every test seconds. Subprocesses inherit it.
os.environ.setdefault("AUTODEP_OPTIMIZE", "off")


def image_bytes(color: str, fmt: str = "JPEG", size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    mode = "RGBA" if fmt == "PNG" else "RGB"
    Image.new(mode, size, RGB[color]).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def color_model(model_dir: Path) -> Path:
    return models.save(models.ColorNet(), model_dir / "colors.pt")


@pytest.fixture(scope="session")
def slow_model(model_dir: Path) -> Path:
    return models.save(models.SlowColorNet(iterations=150), model_dir / "slow.pt")


@pytest.fixture(scope="session")
def broken_model(model_dir: Path) -> Path:
    path = model_dir / "broken.pt"
    path.write_text("this is not a TorchScript archive\n")
    return path


@pytest.fixture
def gated_model(tmp_path: Path) -> tuple[Path, models.Gate]:
    """A `GatedColorNet` model file ("gated") and the gate that holds its requests."""
    gate = models.Gate(tmp_path / "gate")
    return models.save(models.GatedColorNet(str(gate.path)), tmp_path / "gated.pt"), gate


@pytest.fixture
def gated(gated_model: tuple[Path, models.Gate], serve: Any) -> Iterator[tuple[Path, models.Gate]]:
    """`gated_model` for `serve`: it is torn down first, so the gate opens before shutdown."""
    yield gated_model
    gated_model[1].open()


class Server:
    """A running Autodep behind a real aiohttp site on 127.0.0.1, port 0."""

    def __init__(self, service: Autodep, url: str, session: aiohttp.ClientSession) -> None:
        self.service = service
        self.url = url
        self.session = session

    async def predict(
        self, body: bytes, path: str = "/predict", content_type: str = "image/jpeg", **kw: Any
    ) -> tuple[int, dict[str, Any], Any]:
        async with self.session.post(
            self.url + path, data=body, headers={"Content-Type": content_type}, **kw
        ) as response:
            return response.status, await response.json(), response.headers

    async def get(self, path: str) -> tuple[int, dict[str, Any]]:
        async with self.session.get(self.url + path) as response:
            return response.status, await response.json()


async def start_server(service: Autodep) -> tuple[web.AppRunner, str]:
    await service.start()
    runner = web.AppRunner(service.app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    """serve(*models, **settings) -> Server; everything is stopped after the test."""
    started: list[tuple[Autodep, web.AppRunner, aiohttp.ClientSession]] = []

    async def make(*model_paths: Path, **settings: Any) -> Server:
        service = Autodep(list(model_paths) or None, **settings)
        runner, url = await start_server(service)
        session = aiohttp.ClientSession()
        started.append((service, runner, session))
        return Server(service, url, session)

    yield make
    for service, runner, session in reversed(started):
        await session.close()
        await service.shutdown(grace_period=5)
        await runner.cleanup()


def worker_pids() -> set[int]:
    """Our worker processes: what runs under the forkserver this process started, and any
    other child that is not one of multiprocessing's helpers (a spawned worker, a server).

    A forked worker has the forkserver's command line, so it is found by its parent.
    """
    from tests.s3 import SERVER_PIDS  # the S3 test server is not one of ours to check

    found: set[int] = set()
    for child in psutil.Process().children():
        if child.pid in SERVER_PIDS:
            continue
        line = " ".join(_cmdline(child))
        if "forkserver" in line:
            found |= {p.pid for p in _children(child)}
        elif "resource_tracker" not in line:
            found.add(child.pid)
    return found


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def shm_entries() -> set[str]:
    return set(os.listdir("/dev/shm"))


@contextlib.contextmanager
def checked_for_leftovers() -> Iterator[None]:
    """No worker process and no shared-memory segment made inside the block outlives it."""
    shm_before = shm_entries()
    yield
    assert worker_pids() == set(), "worker processes outlived the test"
    new = shm_entries() - shm_before
    assert new - held_by_others(new) == set(), "shared-memory segments outlived the test"


def held_by_others(entries: set[str]) -> set[str]:
    """Those of `entries` that a process outside this one's tree has mapped.

    /dev/shm is the machine's: other programs (multiprocessing semaphores of
    another job, say) come and go in it while a test runs.
    """
    if not entries:
        return set()
    ours = {os.getpid()} | {p.pid for p in psutil.Process().children(recursive=True)}
    held = set()
    for process in psutil.process_iter():
        if process.pid in ours:
            continue
        with contextlib.suppress(psutil.Error):
            held |= {m.path.rsplit("/", 1)[-1] for m in process.memory_maps(grouped=True)}
    return entries & held


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """Every test leaves no worker process and no shared-memory segment behind."""
    with checked_for_leftovers():
        yield


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
