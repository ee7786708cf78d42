"""`ClusterService`: one node's `Service`, routing what it cannot serve to other nodes.

The HTTP layer calls it exactly as it calls `Service`. A request is served on
this node when one of its workers can take it now (an idle worker, or a queue
shorter than a batch per ready worker); otherwise it goes to the node with the
least outstanding work per ready worker for that model, counting the requests
this node has sent there since the controller's last view. The request goes
as its `Item` — for /predict the payload bytes (a JPEG, not its decoded
tensor; the worker decodes it), for the V2 route the tensors it has — in one
Ray actor call to the other node's agent, which serves it there and never
forwards it again; the answer's tensors come back and are encoded here. When
no node has a ready worker (scale-to-zero), the request goes where a worker can
be cold-started: here if this node may run the model and has a free CPU, else
the eligible node with the most free CPUs. A call to a node that died fails
with a Ray error; the request is then retried on another node, and the node is
avoided until the next view (by then the controller has usually dropped it).

    request ─► Service.request ─► Call.infer ─► ClusterService.dispatch
                                                  ├─► here: the pool (memfd, socket)
                                                  └─► agent(node).infer.remote(item)
                                                         └─► that node's pool
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

from ray.exceptions import RayActorError

from autodep.cluster.messages import ClusterView, Failure, ModelReport, NodeReport
from autodep.errors import RequestTimeout, ShuttingDown, Unavailable
from autodep.pool.handle import WorkerState
from autodep.pool.items import Inferred, Item
from autodep.repository.served import ServedModel
from autodep.service import Service

log = logging.getLogger(__name__)

T = TypeVar("T")


class NodeLost(Exception):
    """A forwarded call failed because the node (or its agent) is gone."""


class ClusterService(Service):
    def __init__(self, *args: Any, node: str, url: str = "", **kwargs: Any) -> None:
        super().__init__(*args, autoscale=False, **kwargs)
        self.node = node
        self.url = url
        self.view = ClusterView(agents={}, cpus={}, loads={}, allowed={}, statuses={})
        self._forwarded: Counter[str] = Counter()  # node -> requests sent there, unanswered
        self._suspect: set[str] = set()  # nodes a call failed on, avoided until the next view

    # -- requests ------------------------------------------------------------

    def admit(self, served: ServedModel) -> None:
        """Refuse only when this front end is shutting down: a full local queue forwards."""
        if not self._accepting:
            raise ShuttingDown("the server is not accepting requests (starting or shutting down)")

    def reserve(self, served: ServedModel, items: int) -> int:
        """Nothing held: a full local queue forwards (each item is admitted where it runs)."""
        return 0

    async def dispatch(self, served: ServedModel, item: Item, reserved: bool = False) -> Inferred:
        """One request, here or on another node: a payload travels as its bytes."""
        name = served.config.name
        serve_here = super().dispatch

        async def here() -> Inferred:
            return await serve_here(served, item)

        def there(agent: Any) -> Any:
            return agent.infer.remote(name, item)

        return await self._route(name, here, there)

    async def infer_here(self, model: str, item: Item) -> Inferred:
        """Serve on this node's pool, without routing (a forwarded request lands here)."""
        return await super().dispatch(self.model(model), item)

    async def _route(
        self, model: str, here: Callable[[], Awaitable[T]], there: Callable[[Any], Any]
    ) -> T:
        tried: set[str] = set()
        while True:
            node = self.choose(model, avoid=tried)
            if node == self.node:
                return await here()
            try:
                result: T = await self._forward(node, there)
                return result
            except NodeLost:
                tried.add(node)
                log.warning("node %s lost; retrying model %r's request elsewhere", node, model)

    async def _forward(self, node: str, call: Callable[[Any], Any]) -> Any:
        self._forwarded[node] += 1
        try:
            reply = await asyncio.wait_for(
                call(self.view.agents[node]), self.config.request_timeout
            )
        except TimeoutError:
            raise RequestTimeout(f"node {node} did not answer within the request timeout") from None
        except RayActorError as exc:  # its agent died (with its node) or is unreachable
            self._suspect.add(node)
            raise NodeLost(str(exc)) from exc
        finally:
            self._forwarded[node] -= 1
        if isinstance(reply, Failure):
            if reply.elsewhere:
                raise NodeLost(reply.message)  # that node is draining: try another
            raise reply.error()
        return reply

    # -- routing -------------------------------------------------------------

    def choose(self, model: str, avoid: Collection[str] = ()) -> str:
        """The node to serve one request of `model` on (this node's id for here)."""
        allowed = self.view.allowed.get(model)
        here_ok = allowed is None or self.node in allowed
        pool = self.model(model).pool
        ready = pool.count(WorkerState.IDLE, WorkerState.BUSY)
        if here_ok and ready and pool.queue_depth < ready * pool.settings.max_batch_size:
            return self.node
        others = [
            n
            for n in self.view.agents
            if n != self.node and n not in avoid and n not in self._suspect
        ]
        serving = {n: self._load(n, model) for n in others if self._ready(n, model)}
        if serving:
            best = min(serving, key=lambda n: (serving[n], n))
            here_load = (pool.queue_depth + pool.count(WorkerState.BUSY)) / max(ready, 1)
            if here_ok and ready and here_load <= serving[best]:
                return self.node
            return best
        if here_ok and (ready or pool.live or self._free(self.node) > 0):
            return self.node  # cold start here, or a worker of ours is starting
        cold = [n for n in others if allowed is None or n in allowed]
        if cold:
            return max(cold, key=lambda n: (self._free(n), n))
        if here_ok:
            return self.node
        raise Unavailable(f"no live node can run model {model!r} now", retry_after=2)

    def _ready(self, node: str, model: str) -> bool:
        load = self.view.loads.get(node, {}).get(model)
        return load is not None and load.ready > 0

    def _load(self, node: str, model: str) -> float:
        load = self.view.loads[node][model]
        return (load.outstanding + self._forwarded[node]) / load.ready

    def _free(self, node: str) -> int:
        if node == self.node:
            used = sum(m.pool.live for m in self.models.values())
            return self.view.cpus.get(node, self.config.worker_budget) - used
        loads = self.view.loads.get(node, {})
        return self.view.cpus.get(node, 0) - sum(load.ready for load in loads.values())

    # -- the controller's side -------------------------------------------------

    def report(self) -> NodeReport:
        models = {}
        for name, served in self.models.items():
            pool = served.pool
            models[name] = ModelReport(
                observation=pool.observe(),
                live=pool.live,
                ready=pool.count(WorkerState.IDLE, WorkerState.BUSY),
                outstanding=pool.queue_depth + pool.count(WorkerState.BUSY),
                service_s=pool.service_s,
            )
        return NodeReport(self.node, self.url, models, self.local_status())

    def apply(self, desired: dict[str, int], view: ClusterView) -> None:
        """The controller's tick: this node's worker counts and the cluster's loads."""
        self.view = view
        self._suspect.clear()  # the controller's newer judgement: nodes it still lists get a chance
        for name, count in desired.items():
            self.model(name).pool.set_desired(count, "cluster placement")

    # -- state ---------------------------------------------------------------

    def local_status(self) -> dict[str, Any]:
        status = super().status()
        for model in status["models"].values():
            model["node"] = self.node
            for worker in model["workers"]:
                worker["node"] = self.node
        status["url"] = self.url
        return status

    def status(self) -> dict[str, Any]:
        """Every node's models and workers (other nodes as of the controller's last tick)."""
        statuses = {**self.view.statuses, self.node: self.local_status()}
        merged: dict[str, Any] = {}
        for node in sorted(statuses):
            for name, model in statuses[node]["models"].items():
                entry = merged.setdefault(
                    name, {"max_workers": 0, "desired_workers": 0, "queue_depth": 0, "workers": []}
                )
                entry["max_workers"] += model["max_workers"]
                entry["desired_workers"] += model["desired_workers"]
                entry["queue_depth"] += model["queue_depth"]
                entry["workers"] += model["workers"]
                entry.setdefault("nodes", {})[node] = {
                    k: model[k] for k in ("desired_workers", "queue_depth", "ready", "restarts")
                }
        nodes = {n: {"url": self.view_url(n)} for n in statuses}
        return {"node": self.node, "nodes": nodes, "models": merged}

    def view_url(self, node: str) -> str:
        if node == self.node:
            return self.url
        return str(self.view.statuses.get(node, {}).get("url", ""))
