"""Room in the worker budget for a version that is loading.

A load is refused (409) unless its versions' workers fit in the budget
(`room`) beside what every served version keeps and every other load starts.
A loading version is outside the autoscaler's view
until it is routed, so its workers are reserved out of the budget
(`Autoscaler.reserve`) while it loads, and the pools above their floor shrink to
make room for them (the model's older versions first). Idle workers stop at
once; a busy one finishes its batch first, so for that long the count may
exceed the budget by the workers the autoscaler had added above the floors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from autodep.pool.pool import ModelPool


def floor(pool: ModelPool) -> int:
    """Workers a pool keeps whatever the autoscaler decides: its min_workers (at least the
    one a serving version keeps), or fewer if fewer run. The rest the autoscaler reclaims
    for a load (its budget shrinks by the load's workers, `Autoscaler.reserve`)."""
    return min(pool.live, max(1, pool.settings.min_workers))


def room(budget: int, pools: Iterable[ModelPool], loading: int) -> int:
    """Workers a new load may start: the budget less what every routed and draining pool
    keeps (`floor`) and what the other loads in progress start."""
    return budget - loading - sum(floor(p) for p in pools)


def make_room(
    pools: Sequence[ModelPool], in_use: int, workers: int, budget: int, number: int
) -> None:
    """Pools give up workers above their floor, the model's older versions first, so that
    a loading version's `workers` fit in the worker budget beside the `in_use` ones."""
    excess = in_use + workers - budget
    for pool in pools:
        give = min(excess, pool.live - floor(pool))
        if give > 0:
            pool.set_desired(
                pool.live - give,
                f"version {number} is loading: making room in the budget of {budget} workers",
            )
            excess -= give
