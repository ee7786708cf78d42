"""The cluster placement policy on synthetic nodes and traffic: no clock, no processes, no Ray."""

from __future__ import annotations

from collections.abc import Mapping

from autodep.autoscale.policy import Observation, Settings
from autodep.cluster.policy import ModelState, Node, Placement, balance, place

SETTINGS = Settings(min_workers=0, max_workers=100, upscale_window_s=2, downscale_window_s=10)
SERVICE_S = 0.1


def traffic(rate: float, ticks: int = 3) -> list[Observation]:
    """`ticks` one-second observations of `rate` requests per second."""
    return [
        Observation(
            t=float(t), arrivals=round(rate), busy_s=rate * SERVICE_S, in_flight=0, queued=0
        )
        for t in range(ticks)
    ]


def model(
    rate: float = 0.0,
    current: Mapping[str, int] | None = None,
    requires: frozenset[str] = frozenset(),
    min_workers: int = 0,
) -> ModelState:
    settings = Settings(
        min_workers=min_workers, max_workers=100, upscale_window_s=2, downscale_window_s=10
    )
    return ModelState(
        settings=settings,
        window=traffic(rate) if rate else [Observation(2.0, 0, 0.0, 0, 0)],
        current=dict(current or {}),
        service_s=SERVICE_S,
        max_per_node=8,
        requires=requires,
    )


def nodes(count: int, cpus: int = 2) -> dict[str, Node]:
    return {f"n{i}": Node(cpus=cpus) for i in range(count)}


def test_a_models_workers_are_spread_over_nodes() -> None:
    # 30 requests/s of 0.1 s at 80 % utilisation: 4 workers, one per node first.
    result = place(nodes(4), {"m": model(rate=30)})
    assert result.workers["m"] == {"n0": 1, "n1": 1, "n2": 1, "n3": 1}


def test_no_node_gets_more_workers_than_its_cpus() -> None:
    result = place(nodes(2, cpus=2), {"a": model(rate=50), "b": model(rate=50)})
    for node in ("n0", "n1"):
        assert result.workers["a"][node] + result.workers["b"][node] <= 2
    assert result.total("a") + result.total("b") == 4  # the whole cluster is used


def test_running_workers_stay_where_they_are() -> None:
    current = {"n0": 0, "n1": 2, "n2": 0}
    result = place(nodes(3), {"m": model(rate=15, current=current)})
    assert result.workers["m"] == {"n0": 0, "n1": 2, "n2": 0}  # 2 needed, 2 running: no churn


def test_a_dead_nodes_workers_are_placed_on_the_nodes_left() -> None:
    before = place(nodes(3), {"m": model(rate=22, current={"n0": 1, "n1": 1, "n2": 1})})
    assert before.total("m") == 3
    alive = {n: node for n, node in nodes(3).items() if n != "n1"}  # n1 died
    after = place(alive, {"m": model(rate=22, current={"n0": 1, "n1": 1, "n2": 1})})
    assert after.total("m") == 3
    assert set(after.workers["m"]) == {"n0", "n2"}


def test_a_model_runs_only_on_nodes_with_its_resources() -> None:
    cluster = {"n0": Node(2), "n1": Node(2, frozenset({"gpu-ish"}))}
    result = place(cluster, {"m": model(rate=30, requires=frozenset({"gpu-ish"}))})
    assert result.workers["m"] == {"n1": 2}


def test_no_traffic_scales_to_zero_and_min_workers_holds() -> None:
    idle = place(nodes(2), {"m": model(current={"n0": 1, "n1": 1})})
    assert idle.total("m") == 0
    kept = place(nodes(2), {"m": model(current={}, min_workers=2)})
    assert kept.workers["m"] == {"n0": 1, "n1": 1}


def test_a_busy_model_takes_capacity_an_idle_one_only_remembers() -> None:
    window = [
        Observation(0.0, 40, 4.0, 0, 0),
        *[Observation(float(t), 0, 0.0, 0, 0) for t in (1, 2, 3)],
    ]
    remembered = ModelState(SETTINGS, window, {"n0": 2, "n1": 2}, SERVICE_S, 8)
    result = place(nodes(2), {"idle": remembered, "busy": model(rate=60)})
    assert result.total("busy") > result.total("idle")
    assert result.total("busy") + result.total("idle") == 4


def test_balance_is_zero_when_every_node_is_equally_full() -> None:
    cluster = nodes(2)
    assert balance(cluster, Placement({"m": {"n0": 1, "n1": 1}})) == 0
    assert balance(cluster, Placement({"m": {"n0": 2, "n1": 0}})) == 1
