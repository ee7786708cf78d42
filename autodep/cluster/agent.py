"""`NodeAgent`: the Ray actor that is autodep on one node.

It is pinned to its node (node affinity, not soft), so everything of that host
stays on it: the `ClusterService` with its forkserver, worker processes, memfd
buffers and sockets, and the HTTP front end (the same aiohttp app as a single
host, bound to the address it is given). Ray only carries what crosses hosts:
requests forwarded by other nodes' routers, and the controller's tick.

The actor reserves no CPU (`num_cpus=0`): the node's CPUs are the budget of
its model workers, which Ray does not schedule.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray
from aiohttp import web
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from autodep.cluster.messages import ClusterView, Failure, NodeReport
from autodep.cluster.router import ClusterService
from autodep.config import ServerConfig, refetch_all
from autodep.errors import AutodepError
from autodep.http.app import build_app
from autodep.http.runner import JsonErrorsRunner
from autodep.pool.items import Inferred, Item
from autodep.pool.launcher import stop_helpers

log = logging.getLogger(__name__)

MAX_CONCURRENCY = 1000  # forwarded requests in flight at once; the pools' queues bound the rest


class NodeAgent:
    def __init__(self, config: ServerConfig, node: str) -> None:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        self.config = config
        self.node = node
        self.service: ClusterService | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        """Start the workers the config asks for and the HTTP site; return its URL."""
        # The head node fetched s3:// models into its own cache: fetch them into this one's.
        self.config = await asyncio.to_thread(refetch_all, self.config)
        service = ClusterService(config=self.config, node=self.node)
        await service.start()
        self.service = service
        runner = JsonErrorsRunner(build_app(service), handle_signals=False, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.config.host, self.config.port).start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        service.url = f"http://{host}:{port}"
        log.info("node %s: serving %s on %s", self.node, ", ".join(service.models), service.url)
        return service.url

    def _service(self) -> ClusterService:
        if self.service is None:
            raise RuntimeError("the agent has not started")
        return self.service

    async def infer(self, model: str, item: Item) -> Inferred | Failure:
        """A request another node forwarded: served here, never forwarded again."""
        try:
            return await self._service().infer_here(model, item)
        except AutodepError as exc:
            return Failure.of(exc)

    async def report(self) -> NodeReport:
        return self._service().report()

    async def apply(self, desired: dict[str, int], view: ClusterView) -> None:
        self._service().apply(desired, view)

    async def settled(self) -> None:
        """Return once every model here has the workers it was told to run ready (or failed)."""
        await asyncio.gather(*(m.pool.settled() for m in self._service().models.values()))

    async def stop(self, grace_period: float) -> None:
        """Drain, stop the workers, close the site (the controller then ends the actor)."""
        if self.service is not None:
            await self.service.shutdown(grace_period)
        if self._runner is not None:
            await self._runner.cleanup()
        # The forkserver and resource tracker: gone before the actor is (no leftovers).
        await asyncio.get_running_loop().run_in_executor(None, stop_helpers)


def spawn(config: ServerConfig, node: str) -> Any:
    """A `NodeAgent` actor on `node` (and only there: it dies with the node)."""
    actor = ray.remote(NodeAgent).options(
        num_cpus=0,
        max_concurrency=MAX_CONCURRENCY,
        max_restarts=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
        name=f"autodep-agent-{node[:12]}",
    )
    return actor.remote(config, node)
