"""`Call`: one model request in progress, as `Service.request` hands it to a front end.

By the time a front end holds a `Call`, the model version has been looked up
(404), the request admitted (503) and the version marked in flight, so that a
reload does not retire it before the answer. The front end then reads and
parses its body and runs the items through the call; leaving the
`Service.request` block records the outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

from autodep.codecs import Options, Payload
from autodep.errors import PayloadTooLarge
from autodep.pool.items import Inferred, Item
from autodep.repository.served import ServedModel

# Service.dispatch: the item to the version's pool (or, in a cluster, another node's);
# its flag says the item's queue room was reserved.
Dispatch = Callable[[ServedModel, Item, bool], Awaitable[Inferred]]
# Service.reserve: hold queue room for n items (503 if there is none); how many were held.
Reserve = Callable[[ServedModel, int], int]


class Call:
    def __init__(
        self,
        served: ServedModel,
        dispatch: Dispatch,
        reserve: Reserve,
        executor: Executor | None,
    ) -> None:
        self.served = served
        self._dispatch = dispatch
        self._reserve = reserve
        self._executor = executor
        self._admitted = 0  # items admitted so far (room held for each until it is queued)
        self._reserved = 0  # queue room held for this request's items, not used yet

    @property
    def model(self) -> str:
        return self.served.config.name

    def admit_items(self, count: int) -> None:
        """Admit a request of `count` items as a whole, before any of them is parsed: 413
        over `--max-items-per-request`, 503 if the queue has no room for all of them.

        The room is held (no await in between) until each item is queued or the request
        ends: a request that fits is never refused half-way, one that does not costs nothing.
        `Service.request` admits one item before the body is read, so that a request whose
        body is still arriving holds a place in the queue: bodies being read count too.
        """
        limit = self.served.pool.settings.max_items
        if count > limit:
            raise PayloadTooLarge(
                f"{count:,} items in one request, more than the {limit:,} allowed "
                "(--max-items-per-request); send them in several requests"
            )
        more = count - self._admitted
        if more > 0:
            self._reserved += self._reserve(self.served, more)
            self._admitted = count

    def release(self) -> None:
        """Give back the queue room no item used (the request ended)."""
        if self._reserved:
            self.served.pool.release(self._reserved)
            self._reserved = 0

    async def infer(self, item: Item) -> Inferred:
        """One item through the version's pool: a payload (decoded in a worker) or tensors."""
        reserved = self._reserved > 0
        if reserved:
            self._reserved -= 1
        return await self._dispatch(self.served, item, reserved)

    async def encode(self, inferred: Inferred, options: Options) -> dict[str, Any]:
        """Output tensors into the JSON-able result (off the loop unless cheap)."""
        encoder = self.served.codec.encoder
        if encoder.runs_inline:
            return encoder.encode(inferred.outputs, inferred.meta, options)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, encoder.encode, inferred.outputs, inferred.meta, options
        )

    async def predict(self, payload: Payload, options: Options) -> dict[str, Any]:
        """One input in, the /predict JSON out: `{"model": name, ...the encoder's result}`."""
        inferred = await self.infer(payload)
        return {"model": self.model, **await self.encode(inferred, options)}
