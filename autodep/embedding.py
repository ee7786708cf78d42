"""`Autodep`: the embedding API, the core `Service` plus its HTTP application.

async with Autodep("resnet18.pt", max_workers=4) as ad:   # workers ready on enter
    result = await ad.predict(jpeg_bytes, top_n=5)
    app = ad.app                                           # aiohttp Application
    async for r in ad.map(items):                          # a data set, results as they finish
        print(r.key, r.result or r.error)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from autodep.batch.items import Result
from autodep.batch.run import Items, map_items
from autodep.http.app import build_app
from autodep.service import Service


class Autodep(Service):
    __doc__ = Service.__doc__

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._app: web.Application | None = None

    @property
    def app(self) -> web.Application:
        """The HTTP API as an aiohttp Application (mountable as a sub-application)."""
        if self._app is None:
            self._app = build_app(self)
        return self._app

    def map(
        self,
        items: Items,
        *,
        model: str | None = None,
        top_n: int = 5,
        threshold: float = 0.5,
        concurrency: int | None = None,
    ) -> AsyncIterator[Result]:
        """Every item through the model, results as they finish (see autodep.batch.run)."""
        return map_items(
            self, items, model=model, top_n=top_n, threshold=threshold, concurrency=concurrency
        )
