"""The autoscaling policy: pure functions of (observations, state, settings).

Each tick the manager records one `Observation` per model. The policy turns
the recent window into a desired worker count:

    work_t   = max(busy_s_t, arrivals_t * service_s) + queued_t * service_s
    needed_t = ceil(work_t / (tick_s * target_utilisation)), at least 1 with traffic

    up   = max needed_t over the short window (upscale_window_s): follows a burst
           within a tick or two
    down = max needed_t over the long window (downscale_window_s): a worker is
           only released after a whole long window without need for it
    desired = clamp(max(up, min(current, down)), min_workers, max_workers)

A worker started for a burst is kept while the long window still remembers
the burst, so a constant load never flips the count back and forth; no
traffic at all in the long window lets the count fall to min_workers, zero
included. Demand is measured from arrivals and busy time, never divided by the
number of workers, so zero workers with no traffic stays at zero.

`divide_budget` shares a machine-wide worker budget among models by demand.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Observation:
    """One model's traffic during one tick."""

    t: float  # end of the tick (monotonic seconds)
    arrivals: int  # requests that arrived
    busy_s: float  # worker-seconds spent computing
    in_flight: int  # requests in workers at the end of the tick
    queued: int  # requests waiting at the end of the tick


@dataclass(frozen=True)
class Settings:
    min_workers: int
    max_workers: int
    tick_s: float = 1.0
    upscale_window_s: float = 2.0
    downscale_window_s: float = 30.0
    target_utilisation: float = 0.8


@dataclass(frozen=True)
class Decision:
    desired: int
    reason: str
    needed_now: int = 0  # the short window's need, before the bounds


def needed(obs: Observation, service_s: float, settings: Settings) -> int:
    """Workers this tick's traffic would keep busy at the target utilisation."""
    work = max(obs.busy_s, obs.arrivals * service_s) + obs.queued * service_s
    count = math.ceil(work / (settings.tick_s * settings.target_utilisation) - 1e-9)
    has_traffic = obs.arrivals or obs.in_flight or obs.queued
    return max(count, 1) if has_traffic else count


def decide(
    window: Sequence[Observation], current: int, service_s: float, settings: Settings
) -> Decision:
    """The desired worker count after this tick (window: oldest first, newest last)."""
    if not window:
        return Decision(_clamp(current, settings), "no observations yet")
    now = window[-1].t
    short = [
        needed(o, service_s, settings) for o in window if now - o.t < settings.upscale_window_s
    ]
    long = [
        needed(o, service_s, settings) for o in window if now - o.t < settings.downscale_window_s
    ]
    up, down = max(short), max(long)
    desired = _clamp(max(up, min(current, down)), settings)
    if desired > current:
        reason = f"traffic needs {up} over the last {settings.upscale_window_s:g} s"
    elif desired < current:
        reason = f"at most {down} needed over the last {settings.downscale_window_s:g} s"
    else:
        reason = "steady"
    return Decision(desired, reason, up)


def _clamp(count: int, settings: Settings) -> int:
    return max(settings.min_workers, min(settings.max_workers, count))


@dataclass(frozen=True)
class Claim:
    """One model's request for workers from the shared budget."""

    desired: int  # what the policy decided (the most this model gets)
    floor: int  # min_workers, or 1 if the model has traffic
    needed_now: int = 0  # what its current traffic needs (the short window, unbounded)


def divide_budget(budget: int, claims: Mapping[str, Claim]) -> dict[str, int]:
    """Share `budget` workers: every floor first, then current need, then remembered need.

    Floors are kept even beyond the budget (min_workers is the user's promise,
    and a model with traffic always keeps one worker). Then workers go one at a
    time to the model whose current traffic lacks the most, so a busy model takes
    the capacity an idle model only remembers needing; what is left goes to the
    long window's demand.
    """
    shares = {name: min(claim.floor, claim.desired) for name, claim in claims.items()}
    left = budget - sum(shares.values())
    order = {name: index for index, name in enumerate(claims)}  # ties: the first model listed
    for want in (_now, _desired):
        # The model that lacks the most on top: O(budget log models), for a cluster's budget.
        heap = [
            (shares[n] - want(c), order[n], n) for n, c in claims.items() if want(c) > shares[n]
        ]
        heapq.heapify(heap)
        while left > 0 and heap:
            lack, index, name = heapq.heappop(heap)
            shares[name] += 1
            left -= 1
            if lack + 1 < 0:
                heapq.heappush(heap, (lack + 1, index, name))
    return shares


def _now(claim: Claim) -> int:
    return min(claim.needed_now, claim.desired)


def _desired(claim: Claim) -> int:
    return claim.desired
