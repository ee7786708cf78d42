"""Waiting for a state that a test cannot be signalled about: polling, always with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(predicate: Callable[[], Awaitable[T]], timeout: float = 20.0) -> T:
    """Poll an async condition until it holds (returns its value), failing after a deadline."""
    deadline = time.monotonic() + timeout
    while not (result := await predicate()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.05)
    return result


def wait_until(condition: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll a condition that, once true, stays true, failing after a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.01)  # pacing the probe
