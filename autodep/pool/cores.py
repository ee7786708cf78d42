"""Which cores each worker owns: one allocator over the host's cores, shared by every pool.

A worker owns a set of cores from its start to its exit: the worker pins itself and every
thread of its runtime (torch's OpenMP, OpenVINO, ONNX Runtime) to that set, so two workers
never contend for a core they were told is theirs. The pools of all served models draw from
the one `CoreAllocator` of the service, so ownership is disjoint across models too.

More workers than cores (a user's choice: `--max-workers` or `--threads-per-worker` beyond the
host): `pick` then hands out the cores with the fewest owners, so the sharing is spread evenly
and every worker still runs on a fixed set; those workers do contend, and say so nowhere else
than in their affinity (see docs/serving-plan.md).

`placement` decides where one batch runs (pure, like `autodep.pool.batching`):

- a lone batch (no other worker of its pool busy, nothing queued) runs on all of the pool's
  cores: the other workers are idle, so their cores are free for the moment;
- under load a batch runs on its worker's own cores plus the cores that no live worker owns
  (a pool that has not scaled up yet), never on a core another worker owns.

A worker that was handed extra cores for a lone batch may still hold them when the next
request arrives and another worker starts on its own cores: the two then share a core for
the rest of that one batch, and no longer.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

Cores = tuple[int, ...]


def host_cores() -> Cores:
    """The cores this process may run on (its affinity mask), in order."""
    return tuple(sorted(os.sched_getaffinity(0)))


def pick(owners: Mapping[int, int], count: int) -> Cores:
    """The `count` cores with the fewest owners (then the lowest numbers), in order.

    `owners` maps every core that may be handed out to its number of owners. Asking for more
    cores than exist returns all of them.
    """
    ranked = sorted(owners, key=lambda core: (owners[core], core))
    return tuple(sorted(ranked[: max(1, count)]))


def placement(
    *, own: Cores, free: Cores, pool: Cores, lone: bool, configured: int | None
) -> tuple[Cores, int]:
    """The cores and the thread count of the next batch of a worker that owns `own`.

    `free` are the cores no live worker owns, `pool` all the cores the pool may use. An
    explicit thread count (--threads-per-worker) keeps the worker to its own cores.
    """
    if configured is not None:
        return own, configured
    cores = pool if lone else tuple(sorted({*own, *free}))
    return cores, len(cores)


class CoreAllocator:
    """Hands out cores to workers and takes them back (one per service, shared by its pools)."""

    def __init__(self, cores: Sequence[int] | None = None) -> None:
        self.cores: Cores = tuple(sorted(cores)) if cores is not None else host_cores()
        self._owners = dict.fromkeys(self.cores, 0)

    def take(self, count: int) -> Cores:
        cores = pick(self._owners, count)
        for core in cores:
            self._owners[core] += 1
        return cores

    def give_back(self, cores: Iterable[int]) -> None:
        for core in cores:
            self._owners[core] -= 1

    @property
    def free(self) -> Cores:
        """The cores no worker owns now."""
        return tuple(core for core, owners in self._owners.items() if owners == 0)

    def owners(self) -> dict[int, int]:
        return dict(self._owners)
