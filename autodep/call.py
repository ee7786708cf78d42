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
from autodep.pool.items import Inferred, Item
from autodep.repository.served import ServedModel

# Service.dispatch: the item to the version's pool (or, in a cluster, another node's).
Dispatch = Callable[[ServedModel, Item], Awaitable[Inferred]]


class Call:
    def __init__(self, served: ServedModel, dispatch: Dispatch, executor: Executor | None) -> None:
        self.served = served
        self._dispatch = dispatch
        self._executor = executor

    @property
    def model(self) -> str:
        return self.served.config.name

    async def infer(self, item: Item) -> Inferred:
        """One item through the version's pool: a payload (decoded in a worker) or tensors."""
        return await self._dispatch(self.served, item)

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
