"""The batch engine: items in, results out as they finish, a bounded number in flight.

    items ──► window (at most `concurrency` read and in flight) ──► predict
                                                                        │
    results ◄── as each finishes (any order) ◄──────────────────────────┘

`predict` is `Service.predict` in this process (`map_items`), or a call to a
cluster node's agent (autodep.batch.cluster). Each item is read (file, object)
in a thread only when it enters the window, so memory holds at most
`concurrency` items. A bad item (unreadable, too large, undecodable, failing
in the model) becomes a Result with its error; nothing stops the job.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from autodep.batch.items import Input, Result
from autodep.errors import AutodepError

if TYPE_CHECKING:
    from autodep.service import Service

Items = Iterable[Input | bytes | str] | AsyncIterable[Input | bytes | str]
# One item's data and content type -> the /predict JSON (raises AutodepError for a bad item).
Predict = Callable[[bytes | str, str | None], Awaitable[dict[str, Any]]]


def map_items(
    service: Service,
    items: Items,
    *,
    model: str | None = None,
    top_n: int = 5,
    threshold: float = 0.5,
    concurrency: int | None = None,
) -> AsyncIterator[Result]:
    """Run every item through a model of a started Service; yield each Result as it finishes.

    `items`: `Input`s, or bare bytes / str (keyed by their position). `concurrency`:
    items in flight, at most the model's queue (default: the queue).
    """
    served = service.model(model)
    name = served.config.name
    limit = served.pool.settings.max_queue  # more in flight would be refused (503)

    def predict(data: bytes | str, content_type: str | None) -> Awaitable[dict[str, Any]]:
        return service.predict(
            data, model=name, content_type=content_type, top_n=top_n, threshold=threshold
        )

    window = min(concurrency or limit, limit)
    return run_window(items, predict, window, service.config.max_body)


async def run_window(
    items: Items, predict: Predict, window: int, max_body: int
) -> AsyncIterator[Result]:
    """At most `window` items read and in flight; each Result as its item finishes."""
    source = _inputs(items)
    pending: set[asyncio.Task[Result]] = set()
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < window:
                item = await anext(source, None)
                if item is None:
                    exhausted = True
                    break
                pending.add(asyncio.create_task(_one(predict, item, max_body)))
            if not pending:
                return
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                yield task.result()
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def _one(predict: Predict, item: Input, max_body: int) -> Result:
    if item.error is not None:
        return Result(item.key, error=item.error)
    try:
        data = await asyncio.to_thread(item.data) if callable(item.data) else item.data
        size = len(data.encode() if isinstance(data, str) else data)
        if size > max_body:
            return Result(
                item.key, error=f"the item is {size} bytes, more than --max-body {max_body}"
            )
        result = await predict(data, item.content_type)
    except AutodepError as exc:
        return Result(item.key, error=exc.message)
    except Exception as exc:  # an unreadable item: recorded, never the end of the job
        return Result(item.key, error=f"{type(exc).__name__}: {exc}")
    return Result(item.key, result=result)


async def _inputs(items: Items) -> AsyncIterator[Input]:
    """Inputs one by one; a plain iterable is advanced in a thread (it may list a bucket)."""
    if isinstance(items, AsyncIterable):
        index = 0
        async for entry in items:
            yield _as_input(entry, index)
            index += 1
        return
    iterator = iter(items)

    def advance() -> Input | bytes | str | None:
        return next(iterator, None)

    index = 0
    while True:
        item = await asyncio.to_thread(advance)
        if item is None:
            return
        yield _as_input(item, index)
        index += 1


def _as_input(item: Input | bytes | str, index: int) -> Input:
    return item if isinstance(item, Input) else Input(str(index), item)
