"""`autodep batch --ray ADDRESS`: the items spread over a Ray cluster's nodes.

The cluster mode's controller (autodep.cluster) starts one agent per node, each
with its own pools, and sizes them with its ticks as for serving. This driver
reads the items and sends each, as its payload bytes, to the node with the
fewest of this job's items in flight (the agent serves it there, never
forwarding it); the answer's tensors come back and are encoded here with the
model's codec. A node lost mid-call costs a retry on another node, not the item.

    item ─► least-busy node: agent.infer.remote(model, payload) ─► that node's pool
    result ◄─ encode here (the model's codec) ◄─ output tensors ◄─┘
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import ray
from ray.exceptions import RayActorError

from autodep.batch.items import Result
from autodep.batch.run import Items, run_window
from autodep.cluster.controller import Controller
from autodep.cluster.messages import Failure
from autodep.codecs import Options, Payload, codec_for
from autodep.config import ModelConfig, ServerConfig
from autodep.errors import Unavailable

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0


class ClusterBatch:
    """The cluster's agents, started for one job and stopped after it."""

    def __init__(
        self, config: ServerConfig, address: str, placement: Mapping[str, Sequence[str]]
    ) -> None:
        self.config = config
        self.address = address
        self.controller = Controller(config, placement)
        self._in_flight: Counter[str] = Counter()  # node -> this job's items there
        self.served: Counter[str] = Counter()  # node -> items it answered

    async def start(self) -> None:
        ray.init(address=self.address, logging_level=logging.WARNING)
        await self.controller.start()
        await self.controller.wait_ready(READY_TIMEOUT_S)
        log.info("batch on %d nodes", len(self.controller.agents))

    async def stop(self) -> None:
        if self.served:
            spread = ", ".join(f"{node[:12]}: {n}" for node, n in sorted(self.served.items()))
            log.info("items served per node: %s", spread)
        try:
            await self.controller.stop()
        finally:
            ray.shutdown()

    def map(
        self,
        items: Items,
        model: ModelConfig,
        options: Options,
        concurrency: int | None,
    ) -> AsyncIterator[Result]:
        codec = codec_for(model)
        queue = self.config.settings_for(model).max_queue
        limit = queue * max(1, len(self.controller.agents))  # every node's queue

        async def predict(data: bytes | str, content_type: str | None) -> dict[str, Any]:
            payload = Payload.of(data, content_type)
            codec.decoder.check(payload)  # a wrong kind of input is refused before it travels
            reply = await self._forward(model.name, payload)
            outputs = await asyncio.to_thread(
                codec.encoder.encode, reply.outputs, reply.meta, options
            )
            return {"model": model.name, **outputs}

        return run_window(items, predict, min(concurrency or limit, limit), self.config.max_body)

    async def _forward(self, name: str, payload: Payload) -> Any:
        """Serve on the least busy node; once more elsewhere if that node is lost or draining."""
        tried: set[str] = set()
        while True:
            nodes = [n for n in self.controller.agents if n not in tried]
            if not nodes:
                raise Unavailable("no node of the cluster could take the item")
            node = min(nodes, key=lambda n: self._in_flight[n])
            tried.add(node)
            self._in_flight[node] += 1
            try:
                reply = await self.controller.agents[node].infer.remote(name, payload)
            except RayActorError as exc:
                log.warning("node %s lost (%s): the item goes to another node", node, exc)
                continue
            finally:
                self._in_flight[node] -= 1
            if isinstance(reply, Failure):
                if reply.elsewhere:
                    continue
                raise reply.error()
            self.served[node] += 1
            return reply
