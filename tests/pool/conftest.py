"""Fixtures of the pool's unit layer: a `ModelPool` on a fake launcher (tests/pool/fakes.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from autodep.autoscale.policy import Settings as AutoscaleSettings
from autodep.config import PoolSettings
from autodep.pool.pool import ModelPool
from tests.pool.fakes import SPEC, FakeLauncher


def settings(**overrides: Any) -> PoolSettings:
    """One model's pool settings: one worker, batches of up to 4, no queue delay."""
    values: dict[str, Any] = {
        "cores": 2,
        "min_workers": 1,
        "max_workers": 1,
        "threads": None,
        "max_queue": 8,
        "max_items": 8,
        "idle_timeout": 30.0,
        "request_timeout": 5.0,
        "max_batch_size": 4,
        "max_queue_delay": 0.0,
        **overrides,
    }
    values["autoscale"] = AutoscaleSettings(values["min_workers"], values["max_workers"])
    return PoolSettings(**values)


@pytest.fixture
async def launcher() -> AsyncIterator[FakeLauncher]:
    fake = FakeLauncher()
    yield fake
    fake.close()


@pytest.fixture
async def make_pool(launcher: FakeLauncher) -> AsyncIterator[Callable[..., Awaitable[ModelPool]]]:
    """make_pool(workers=None, **settings) -> a started pool; closed after the test."""
    pools: list[ModelPool] = []

    async def make(workers: int | None = None, **overrides: Any) -> ModelPool:
        pool = ModelPool(SPEC, settings(**overrides), launcher)
        pools.append(pool)
        await pool.start(workers)
        return pool

    yield make
    for pool in pools:
        await pool.close()
