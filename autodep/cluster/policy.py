"""Cluster placement and autoscaling: a pure function of (nodes, per-model traffic, state).

Each tick the controller sums every model's traffic over the nodes into one
`Observation` per tick and calls `place`:

    1. per model, the single-host policy (`autodep.autoscale.policy.decide`)
       turns the cluster-wide window into a desired total, bounded by
       min_workers and by what the nodes that may run it can hold;
    2. `divide_budget` shares the cluster's budget (the sum of the nodes' CPUs)
       among the models, as it shares one host's cores;
    3. each model's share is placed on nodes: workers stay where they run
       (no churn), a surplus leaves the nodes that have the most of that model,
       and new workers go one at a time to the eligible node with the fewest
       workers of that model (spread, for availability), then the most free
       CPUs. A node never gets more workers than its CPUs, except for floors.

A node that died is simply absent from `nodes`: its workers no longer count,
so the model's total is short and step 3 places the difference on the nodes
that remain. Zero desired workers everywhere is scale-to-zero; a request then
cold-starts a worker on the node the router sends it to, and the next tick
sees that worker as current.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from autodep.autoscale.policy import Claim, Observation, Settings, decide, divide_budget


@dataclass(frozen=True)
class Node:
    cpus: int  # the node's worker budget
    resources: frozenset[str] = frozenset()  # its custom Ray resources, by name


@dataclass(frozen=True)
class ModelState:
    settings: Settings  # min_workers / max_workers are cluster-wide totals
    window: Sequence[Observation]  # cluster-wide traffic per tick, oldest first
    current: Mapping[str, int]  # live workers per node
    service_s: float  # seconds of compute per request
    max_per_node: int  # most workers of this model on one node
    requires: frozenset[str] = frozenset()  # resources a node needs to run it


@dataclass(frozen=True)
class Placement:
    workers: dict[str, dict[str, int]]  # model -> node -> desired workers
    reasons: dict[str, str] = field(default_factory=dict)

    def total(self, model: str) -> int:
        return sum(self.workers[model].values())


def eligible(nodes: Mapping[str, Node], state: ModelState) -> list[str]:
    """The nodes that may run a model, in a stable order."""
    return sorted(n for n, node in nodes.items() if state.requires <= node.resources)


def place(nodes: Mapping[str, Node], models: Mapping[str, ModelState]) -> Placement:
    """Desired workers per model per node after this tick."""
    claims: dict[str, Claim] = {}
    reasons: dict[str, str] = {}
    for name, state in models.items():
        where = eligible(nodes, state)
        capacity = sum(min(nodes[n].cpus, state.max_per_node) for n in where)
        settings = dataclasses.replace(
            state.settings,
            max_workers=min(state.settings.max_workers, capacity),
            min_workers=min(state.settings.min_workers, capacity),
        )
        current = sum(state.current.get(n, 0) for n in where)
        decision = decide(state.window, current, state.service_s, settings)
        now = state.window[-1].t if state.window else 0.0
        recent = [o for o in state.window if now - o.t < settings.upscale_window_s]
        traffic = any(o.arrivals or o.in_flight or o.queued for o in recent)
        floor = min(max(settings.min_workers, int(traffic)), capacity)
        claims[name] = Claim(decision.desired, floor, decision.needed_now)
        reasons[name] = decision.reason if where else "no node has the resources it requires"
    shares = divide_budget(sum(n.cpus for n in nodes.values()), claims)
    workers = _keep(nodes, models, shares)
    used = {n: sum(per_node.get(n, 0) for per_node in workers.values()) for n in nodes}
    for name in sorted(models, key=lambda m: (-shares[m], m)):
        _add(nodes, models[name].max_per_node, workers[name], used, shares[name])
        placed = sum(workers[name].values())
        if placed < shares[name]:
            reasons[name] += f"; {shares[name] - placed} workers found no free CPU"
    return Placement(workers, reasons)


def _keep(
    nodes: Mapping[str, Node], models: Mapping[str, ModelState], shares: Mapping[str, int]
) -> dict[str, dict[str, int]]:
    """Each model's running workers, trimmed to its share and to every node's CPUs."""
    workers: dict[str, dict[str, int]] = {}
    for name, state in models.items():
        where = eligible(nodes, state)
        kept = {n: min(state.current.get(n, 0), state.max_per_node) for n in where}
        surplus = sum(kept.values()) - shares[name]
        while surplus > 0:
            fullest = max(kept, key=lambda n: (kept[n], n))
            kept[fullest] -= 1
            surplus -= 1
        workers[name] = kept
    for node_id, node in nodes.items():
        used = sum(per_node.get(node_id, 0) for per_node in workers.values())
        while used > node.cpus:
            biggest = max(workers, key=lambda m: (workers[m].get(node_id, 0), m))
            workers[biggest][node_id] -= 1
            used -= 1
    return workers


def _add(
    nodes: Mapping[str, Node],
    max_per_node: int,
    mine: dict[str, int],
    used: dict[str, int],
    share: int,
) -> None:
    """New workers, one at a time: fewest of this model first, then most free CPUs."""
    missing = share - sum(mine.values())
    if missing <= 0:
        return
    # (workers of this model, -free CPUs, node): the best node is the smallest key.
    heap = [
        (mine[n], used[n] - nodes[n].cpus, n)
        for n in mine
        if used[n] < nodes[n].cpus and mine[n] < max_per_node
    ]
    heapq.heapify(heap)
    while missing and heap:
        _, _, best = heapq.heappop(heap)
        mine[best] += 1
        used[best] += 1
        missing -= 1
        if used[best] < nodes[best].cpus and mine[best] < max_per_node:
            heapq.heappush(heap, (mine[best], used[best] - nodes[best].cpus, best))


def balance(nodes: Mapping[str, Node], placement: Placement) -> float:
    """The busiest node's share of its CPUs minus the idlest's (0 is perfectly even)."""
    if not nodes:
        return 0.0
    loads = [
        sum(p.get(n, 0) for p in placement.workers.values()) / node.cpus
        for n, node in nodes.items()
    ]
    return max(loads) - min(loads)
