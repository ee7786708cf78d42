"""The autoscaler's I/O: every tick, observe each pool, decide, share the budget, apply."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping

from autodep.autoscale.policy import Claim, Decision, Observation, decide, divide_budget
from autodep.pool.pool import ModelPool

log = logging.getLogger(__name__)

DEFAULT_SERVICE_S = 0.05  # seconds per request assumed until a model has run a batch


class Autoscaler:
    def __init__(
        self, pools: Callable[[], Mapping[str, ModelPool]], budget: int, tick_s: float
    ) -> None:
        self._pools = pools  # asked at every tick: its owner adds and removes pools
        self.budget = budget
        self.tick_s = tick_s
        self._windows: dict[str, deque[Observation]] = {}
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._next = 0.0

    def start(self) -> None:
        self._next = self._loop.time() + self.tick_s
        self._timer = self._loop.call_at(self._next, self._tick)

    def reserve(self, workers: int) -> None:
        """Take workers out of the budget (a version loading outside the autoscaler's view)."""
        self.budget -= workers

    def release(self, workers: int) -> None:
        """Give back what `reserve` took."""
        self.budget += workers

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        try:
            self.step()
        except Exception:
            log.exception("autoscaler tick failed")
        # A fixed cadence: the next tick is due one period after this one was.
        self._next = max(self._next + self.tick_s, self._loop.time())
        self._timer = self._loop.call_at(self._next, self._tick)

    def step(self) -> None:
        """One tick: the pools get their share of the budget."""
        decisions: dict[str, Decision] = {}
        claims: dict[str, Claim] = {}
        pools = self._pools()
        for gone in self._windows.keys() - pools.keys():
            del self._windows[gone]
        for name, pool in pools.items():
            settings = pool.settings.autoscale
            window = self._windows.setdefault(name, deque())
            window.append(pool.observe())
            while window[-1].t - window[0].t > settings.downscale_window_s:
                window.popleft()
            decision = decide(window, pool.live, pool.service_s or DEFAULT_SERVICE_S, settings)
            recent = [o for o in window if window[-1].t - o.t < settings.upscale_window_s]
            traffic = any(o.arrivals or o.in_flight or o.queued for o in recent)
            decisions[name] = decision
            claims[name] = Claim(
                decision.desired, max(settings.min_workers, int(traffic)), decision.needed_now
            )
        shares = divide_budget(self.budget, claims)
        for name, pool in pools.items():
            decision = decisions[name]
            reason = decision.reason
            if shares[name] < decision.desired:
                reason += f"; limited by the budget of {self.budget} workers"
            pool.set_desired(shares[name], reason)
