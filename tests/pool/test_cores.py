"""Core ownership: the allocator's pure choice and where a batch runs (no processes)."""

from __future__ import annotations

from autodep.pool.cores import CoreAllocator, pick, placement


def test_pick_takes_the_least_owned_cores_then_the_lowest():
    assert pick({0: 0, 1: 0, 2: 0, 3: 0}, 2) == (0, 1)
    assert pick({0: 1, 1: 0, 2: 1, 3: 0}, 2) == (1, 3)
    assert pick({0: 2, 1: 1}, 1) == (1,)
    assert pick({0: 0, 1: 0}, 5) == (0, 1)  # more than exist: all of them


def test_workers_own_disjoint_cores_until_there_are_more_workers_than_cores():
    cores = CoreAllocator([0, 1, 2, 3])
    first, second = cores.take(2), cores.take(2)
    assert set(first).isdisjoint(second) and set(first) | set(second) == {0, 1, 2, 3}
    assert cores.free == ()
    third = cores.take(1)  # oversubscribed: the sharing is spread, one owner more per core
    assert cores.owners()[third[0]] == 2 and sorted(cores.owners().values()) == [1, 1, 1, 2]
    cores.give_back(first)
    assert set(cores.free) == set(first) - set(third)


def test_a_lone_batch_runs_on_the_whole_pool_and_a_loaded_one_on_its_own_cores():
    where = dict(own=(1,), free=(), pool=(0, 1), configured=None)
    assert placement(**where, lone=True) == ((0, 1), 2)
    assert placement(**where, lone=False) == ((1,), 1)
    # Under load, cores no live worker owns (the pool has not scaled up yet) are used too.
    assert placement(**{**where, "free": (3, 2)}, lone=False) == ((1, 2, 3), 3)
    # An explicit thread count keeps the worker on its own cores.
    assert placement(**{**where, "configured": 4}, lone=True) == ((1,), 4)
