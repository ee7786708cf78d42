"""`python -m bench.cluster_sim`: the cluster policy at 100 hosts and 1,000 workers, simulated.

`autodep.cluster.policy.place` is a pure function, so it runs here without
Ray or processes: 100 synthetic nodes of 10 CPUs, 60 models whose popularity
follows a Zipf law, traffic that swings (a slow wave plus bursts), one tick a
second. Each tick feeds every model's cluster-wide observation (what its
current workers could serve of the arrivals) to `place`, and the placement
becomes the next tick's current workers. At tick 60, 5 nodes die.

Reported: decisions per second (calls of `place`, and per-model-per-node
counts decided), the balance (the fullest node's share of its CPUs minus the
emptiest's), how many models with 2+ workers sit on 2+ nodes, churn (workers
started or stopped per tick), and how many workers the dead nodes took with
them against how many the same tick started on the others.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence

import numpy as np

from autodep.autoscale.policy import Observation, Settings
from autodep.cluster.policy import ModelState, Node, Placement, balance, place

SERVICE_S = 0.05  # seconds per request
SETTINGS = Settings(min_workers=1, max_workers=1_000_000, upscale_window_s=2, downscale_window_s=30)


def rates(models: int, ticks: int, total_rps: float, seed: int) -> np.ndarray:
    """Requests per second, [tick, model]: Zipf popularity x a wave x random bursts."""
    rng = np.random.default_rng(seed)
    popularity = 1 / np.arange(1, models + 1) ** 1.1
    popularity /= popularity.sum()
    t = np.arange(ticks)[:, None]
    wave = 1 + 0.5 * np.sin(2 * math.pi * t / 120 + rng.uniform(0, 2 * math.pi, models))
    bursts = 1 + 3 * (rng.random((ticks, models)) < 0.02)
    return total_rps * popularity * wave * bursts


def simulate(
    nodes: int, cpus: int, models: int, ticks: int, total_rps: float, deaths: int, seed: int
) -> dict[str, float]:
    cluster = {f"node{i:03d}": Node(cpus) for i in range(nodes)}
    traffic = rates(models, ticks, total_rps, seed)
    names = [f"model{j:02d}" for j in range(models)]
    windows: dict[str, list[Observation]] = {n: [] for n in names}
    current: dict[str, dict[str, int]] = {n: {} for n in names}
    elapsed, balances, churn, spread = 0.0, [], [], []
    lost = replaced = 0
    dead_at = ticks // 2
    for tick in range(ticks):
        if tick == dead_at:
            for node in sorted(cluster)[:deaths]:
                lost += sum(per_node.get(node, 0) for per_node in current.values())
                del cluster[node]
        states = {}
        for j, name in enumerate(names):
            workers = sum(current[name].get(n, 0) for n in cluster)
            arrivals = int(traffic[tick, j])
            served = min(arrivals * SERVICE_S, workers * 1.0)
            queued = max(0, int((arrivals * SERVICE_S - served) / SERVICE_S))
            window = windows[name]
            window.append(
                Observation(float(tick), arrivals, served, min(workers, arrivals), queued)
            )
            while window[-1].t - window[0].t > SETTINGS.downscale_window_s:
                window.pop(0)
            states[name] = ModelState(SETTINGS, list(window), current[name], SERVICE_S, cpus)
        began = time.process_time()  # CPU time: the machine is shared
        placement = place(cluster, states)
        elapsed += time.process_time() - began
        balances.append(balance(cluster, placement))
        churn.append(_moved(current, placement.workers))
        spread.append(_spread(placement))
        if tick == dead_at:
            survivors = sum(sum(c for n, c in p.items() if n in cluster) for p in current.values())
            replaced = sum(placement.total(m) for m in names) - survivors
        current = placement.workers
    used = sum(sum(p.values()) for p in current.values())
    return {
        "ticks": ticks,
        "place_per_s": ticks / elapsed,
        "decisions_per_s": ticks * models * nodes / elapsed,
        "tick_ms": 1000 * elapsed / ticks,
        "balance_mean": float(np.mean(balances)),
        "balance_max": float(np.max(balances)),
        "spread": float(np.mean(spread)),
        "churn_per_tick": float(np.mean(churn)),
        "workers_at_end": used,
        "lost_with_nodes": lost,
        "started_elsewhere_same_tick": replaced,
    }


def _moved(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> int:
    moved = 0
    for model, per_node in after.items():
        nodes = set(per_node) | set(before.get(model, {}))
        moved += sum(abs(per_node.get(n, 0) - before.get(model, {}).get(n, 0)) for n in nodes)
    return moved


def _spread(placement: Placement) -> float:
    """Of the models with 2+ workers, the share that run on 2+ nodes."""
    multi = [p for p in placement.workers.values() if sum(p.values()) >= 2]
    if not multi:
        return 1.0
    return sum(1 for p in multi if sum(1 for c in p.values() if c) >= 2) / len(multi)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_sim", description=__doc__)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--cpus", type=int, default=10, help="CPUs (worker budget) per node")
    parser.add_argument("--models", type=int, default=60)
    parser.add_argument("--ticks", type=int, default=120)
    parser.add_argument("--rps", type=float, default=6_000, help="cluster-wide requests/s")
    parser.add_argument("--deaths", type=int, default=5, help="nodes that die half-way")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = simulate(
        args.nodes, args.cpus, args.models, args.ticks, args.rps, args.deaths, args.seed
    )
    print(
        f"# cluster policy: {args.nodes} nodes x {args.cpus} CPUs, {args.models} models, "
        f"{args.rps:g} req/s at {SERVICE_S * 1000:g} ms, {args.ticks} ticks, "
        f"{args.deaths} nodes die at tick {args.ticks // 2}\n"
    )
    for key, value in result.items():
        print(f"{key:>18}: {value:,.3f}" if isinstance(value, float) else f"{key:>18}: {value}")


if __name__ == "__main__":
    main()
