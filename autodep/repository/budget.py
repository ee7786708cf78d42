"""Room in the worker budget for a version that is loading.

A loading version is outside the autoscaler's view until it is routed, so its
workers are reserved out of the budget (`Autoscaler.reserve`) while it loads,
and the model's older versions shrink to make room for them.
"""

from __future__ import annotations

from collections.abc import Sequence

from autodep.pool.pool import ModelPool


def make_room(
    older: Sequence[ModelPool], in_use: int, workers: int, budget: int, number: int
) -> None:
    """Older versions of a model give up workers (keeping one each) so that a loading
    version's `workers` fit in the worker budget beside the `in_use` ones."""
    excess = in_use + workers - budget
    for pool in older:
        give = min(excess, pool.live - 1)
        if give > 0:
            pool.set_desired(
                pool.live - give,
                f"version {number} is loading: making room in the budget of {budget} workers",
            )
            excess -= give
