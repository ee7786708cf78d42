"""Requests in progress on one model version, counted by the routing generation they started in.

Each version has one (`ServedModel.in_flight`). `Service.request` looks the
version up and holds it (`request()`) in the same step, until the answer; so a
version taken out of the routing table is stopped only after every request
that found it has finished (a grace period, as in read-copy-update), and a
request to another version or model never delays it. `advance()` marks a
routing change; `settled(g)` waits for the requests of generations up to g.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class InFlight:
    def __init__(self) -> None:
        self._generation = 0
        self._active: Counter[int] = Counter()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    @contextmanager
    def request(self) -> Iterator[None]:
        generation = self._generation
        self._active[generation] += 1
        try:
            yield
        finally:
            self._active[generation] -= 1
            if not self._active[generation]:
                del self._active[generation]
                self._wake()

    def advance(self) -> int:
        """A routing change: returns the last generation that may have seen the old routes."""
        self._generation += 1
        return self._generation - 1

    async def settled(self, generation: int) -> None:
        """Return once no request of `generation` or earlier is in progress."""
        if self._done(generation):
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((generation, future))
        try:
            await future
        finally:
            self._waiters = [(g, f) for g, f in self._waiters if f is not future]

    @property
    def count(self) -> int:
        return sum(self._active.values())

    def _done(self, generation: int) -> bool:
        return all(g > generation for g in self._active)

    def _wake(self) -> None:
        for generation, future in self._waiters:
            if not future.done() and self._done(generation):
                future.set_result(None)
