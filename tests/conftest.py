"""Fixtures only: small models, real servers on loopback port 0, and leak checks.

Helpers that tests import live in `tests/support/`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from autodep import Autodep
from tests import models
from tests.support.leaks import checked_for_leftovers
from tests.support.servers import Server, start_server

pytest_plugins = ["tests.support.s3"]  # the S3 test server's fixtures

# Tests serve their models as given unless they test the optimizer (tests/optimize/):
# a search per fixture model would cost every test seconds. Subprocesses inherit it.
os.environ.setdefault("AUTODEP_OPTIMIZE", "off")


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


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """Every test leaves no worker process and no shared-memory segment behind."""
    with checked_for_leftovers():
        yield
