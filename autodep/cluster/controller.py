"""The cluster controller: one agent per node, and every tick observe → place → apply.

It runs in the driver (`python -m autodep.serve --ray ...`), which owns the
agents: if the driver exits, Ray ends them, and their workers end with them.

    tick:  agent.report() on every node ──► sum each model's traffic ──► policy.place()
           agent.apply(desired, view) on every node ◄──────────────────────┘

A node is lost when Ray reports its agent dead (the actor died with its
raylet) or when the GCS node table says it is dead; its agent is
dropped, the next placement puts its models' workers on the other nodes, and
the routers stop sending it requests when they get the new view.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError

from autodep.autoscale.manager import DEFAULT_SERVICE_S
from autodep.autoscale.policy import Observation, Settings
from autodep.cluster import agent as agents
from autodep.cluster.messages import ClusterView, Load, NodeReport
from autodep.cluster.policy import ModelState, Node, Placement, place
from autodep.config import ServerConfig

log = logging.getLogger(__name__)

UNLIMITED = 1_000_000  # a model's cluster-wide maximum: bounded by the nodes' CPUs instead


@dataclass(frozen=True)
class NodeInfo:
    node: str
    address: str  # the node's IP as Ray knows it
    cpus: int
    resources: frozenset[str]


def alive_nodes() -> list[NodeInfo]:
    """The GCS's node table: the nodes alive now."""
    found = []
    for entry in ray.nodes():  # type: ignore[no-untyped-call]
        if not entry.get("Alive"):
            continue
        resources = entry.get("Resources", {})
        custom = {r for r in resources if r not in ("CPU", "GPU", "memory", "object_store_memory")}
        found.append(
            NodeInfo(
                node=entry["NodeID"],
                address=entry["NodeManagerAddress"],
                cpus=int(resources.get("CPU", 0)),
                resources=frozenset(r for r in custom if not r.startswith("node:")),
            )
        )
    return found


def node_config(config: ServerConfig, node: NodeInfo) -> ServerConfig:
    """One node's share of the config: its CPUs as budget, pools sized by the controller."""
    models = []
    for model in config.models:
        most = min(config.settings_for(model).max_workers, max(node.cpus, 1))
        workers = model.workers.model_copy(update={"min": 0, "max": most})
        models.append(model.model_copy(update={"workers": workers}))
    host = node.address if config.host == "node" else config.host
    return config.model_copy(
        update={
            "models": tuple(models),
            "host": host,
            "min_workers": 0,
            "max_total_workers": max(node.cpus, 1),
        }
    )


class Controller:
    def __init__(self, config: ServerConfig, placement: Mapping[str, Sequence[str]]) -> None:
        self.config = config
        self.requires = {name: frozenset(r) for name, r in placement.items()}
        self.nodes: dict[str, NodeInfo] = {}
        self.agents: dict[str, Any] = {}
        self.urls: dict[str, str] = {}
        self.reports: dict[str, NodeReport] = {}
        self._windows: dict[str, deque[Observation]] = {m.name: deque() for m in config.models}
        self._task: asyncio.Task[None] | None = None
        self._joining: set[str] = set()  # nodes whose agent is starting
        self._joins: set[asyncio.Task[None]] = set()
        self.placement = Placement({})

    async def start(self) -> None:
        """An agent on every alive node, serving (the first placement comes with the ticks)."""
        nodes = await asyncio.to_thread(alive_nodes)
        if not nodes:
            raise RuntimeError("the Ray cluster has no alive node")
        await asyncio.gather(*(self._join(info) for info in nodes))

    async def _join(self, info: NodeInfo) -> None:
        """Start an agent and its front end on a node; it counts once it serves."""
        self._joining.add(info.node)
        try:
            agent = agents.spawn(node_config(self.config, info), info.node)
            url = await agent.start.remote()
        finally:
            self._joining.discard(info.node)
        self.nodes[info.node], self.agents[info.node], self.urls[info.node] = info, agent, url
        log.info("node %s: front end on %s", info.node, url)

    async def wait_ready(self, timeout: float) -> None:
        """Tick until every model has its min_workers ready somewhere, then tick forever."""
        deadline = time.monotonic() + timeout
        await self.step()
        while not self._ready():
            # Each node's pools say when the workers placed there are ready (or failed).
            try:
                await asyncio.wait_for(self._gather("settled"), deadline - time.monotonic())
            except TimeoutError:
                raise TimeoutError(
                    f"the models' workers were not ready within {timeout:g} s"
                ) from None
            await self.step()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick)  # the tick's cadence, not a wait for a state
            try:
                await self.step()
            except Exception:
                log.exception("cluster tick failed")

    async def step(self) -> Placement:
        """One tick: reports from every node, a placement, and the new view to every node."""
        await self._sync_membership()
        reports = await self._gather("report")
        self.reports = {n: r for n, r in reports.items() if isinstance(r, NodeReport)}
        placement = place(self._policy_nodes(), self._model_states())
        self.placement = placement
        view = ClusterView(
            agents=dict(self.agents),
            cpus={n: info.cpus for n, info in self.nodes.items()},
            loads={
                n: {m: Load(r.ready, r.outstanding) for m, r in report.models.items()}
                for n, report in self.reports.items()
            },
            allowed={
                m: [n for n, info in self.nodes.items() if need <= info.resources]
                for m, need in self.requires.items()
            },
            statuses={n: report.status for n, report in self.reports.items()},
        )
        await self._gather(
            "apply",
            {
                n: ({m: placement.workers[m].get(n, 0) for m in placement.workers}, view)
                for n in self.agents
            },
        )
        return placement

    async def _gather(
        self, method: str, args: Mapping[str, tuple[Any, ...]] | None = None
    ) -> dict[str, Any]:
        """Call `method` on every agent; an agent Ray reports dead or unreachable is lost."""
        nodes = list(self.agents)
        calls = [getattr(self.agents[n], method).remote(*(args or {}).get(n, ())) for n in nodes]
        results = await asyncio.gather(*calls, return_exceptions=True)
        answers = {}
        for node, result in zip(nodes, results, strict=True):
            if isinstance(result, ActorDiedError):
                self._lose(node, "its agent died")
            elif isinstance(result, ActorUnavailableError):
                log.warning("node %s did not answer this tick: %s", node, result)
            elif isinstance(result, BaseException):
                raise result
            else:
                answers[node] = result
        return answers

    async def _sync_membership(self) -> None:
        """Nodes the GCS lists dead are lost; new alive nodes get an agent (in the background)."""
        alive = {info.node: info for info in await asyncio.to_thread(alive_nodes)}
        for node in [n for n in self.agents if n not in alive]:
            self._lose(node, "the GCS lists it dead")
        for node, info in alive.items():
            if node not in self.agents and node not in self._joining and self._task is not None:
                task = asyncio.get_running_loop().create_task(self._join(info))
                self._joins.add(task)
                task.add_done_callback(self._joined)

    def _joined(self, task: asyncio.Task[None]) -> None:
        self._joins.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a node could not join", exc_info=task.exception())

    def _lose(self, node: str, why: str) -> None:
        if self.agents.pop(node, None) is None:
            return
        self.nodes.pop(node, None)
        self.reports.pop(node, None)
        self.urls.pop(node, None)
        log.warning("node %s lost (%s): its models are placed on the other nodes", node, why)

    def _policy_nodes(self) -> dict[str, Node]:
        return {n: Node(info.cpus, info.resources) for n, info in self.nodes.items()}

    def _model_states(self) -> dict[str, ModelState]:
        states = {}
        now = time.monotonic()
        for model in self.config.models:
            settings = self.config.settings_for(model)
            reports = [
                r.models[model.name] for r in self.reports.values() if model.name in r.models
            ]
            window = self._windows[model.name]
            window.append(
                Observation(
                    t=now,
                    arrivals=sum(r.observation.arrivals for r in reports),
                    busy_s=sum(r.observation.busy_s for r in reports),
                    in_flight=sum(r.observation.in_flight for r in reports),
                    queued=sum(r.observation.queued for r in reports),
                )
            )
            while now - window[0].t > settings.autoscale.downscale_window_s:
                window.popleft()
            measured = [r.service_s for r in reports if r.service_s is not None]
            states[model.name] = ModelState(
                settings=Settings(
                    min_workers=settings.min_workers,
                    max_workers=UNLIMITED,
                    tick_s=self.config.tick,
                    upscale_window_s=settings.autoscale.upscale_window_s,
                    downscale_window_s=settings.autoscale.downscale_window_s,
                    target_utilisation=settings.autoscale.target_utilisation,
                ),
                window=list(window),
                current={n: r.models[model.name].live for n, r in self.reports.items()},
                service_s=sum(measured) / len(measured) if measured else DEFAULT_SERVICE_S,
                max_per_node=settings.max_workers,
                requires=self.requires.get(model.name, frozenset()),
            )
        return states

    def _ready(self) -> bool:
        for model in self.config.models:
            placed = sum(self.placement.workers.get(model.name, {}).values())
            want = min(self.config.settings_for(model).min_workers, placed)
            have = sum(r.models[model.name].ready for r in self.reports.values())
            if have < want:
                return False
        return True

    async def stop(self) -> None:
        """Drain every node within the grace period, stop its workers, end its agent."""
        for task in [self._task, *self._joins]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in [self._task, *self._joins] if t), return_exceptions=True)
        await self._gather("stop", {n: (self.config.grace_period,) for n in self.agents})
        # A graceful exit (atexit handlers run, so multiprocessing cleans up after itself).
        await asyncio.gather(
            *(a.__ray_terminate__.remote() for a in self.agents.values()), return_exceptions=True
        )
        self.agents.clear()
