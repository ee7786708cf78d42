"""`Autodep`: the embedding API, a core `Service` and its HTTP application.

async with Autodep("resnet18.pt", max_workers=4) as ad:   # workers ready on enter
    result = await ad.predict(jpeg_bytes, top_n=5)
    app = ad.app                                           # aiohttp Application
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Self

from aiohttp import web

from autodep.batch.items import Result
from autodep.batch.run import Items, map_items
from autodep.call import Call
from autodep.config import ModelSource, ServerConfig
from autodep.http.app import build_app
from autodep.metrics import Metrics
from autodep.pool.launcher import Launcher
from autodep.repository.manager import Repository
from autodep.repository.served import ServedModel
from autodep.service import Service


class Autodep:
    """Serve one or more models from a pool of worker processes each, in this process.

    `models` is a TorchScript file, a `ModelConfig`, or a list of them;
    `repository` is a model repository YAML; `config` a whole `ServerConfig`.
    Other keyword arguments are `ServerConfig` fields (max_workers=4, ...).
    """

    def __init__(
        self,
        models: ModelSource | Sequence[ModelSource] | None = None,
        *,
        labels: str | Path | None = None,
        repository: str | Path | None = None,
        config: ServerConfig | None = None,
        launcher: Launcher | None = None,
        **settings: Any,
    ) -> None:
        self.service = Service(
            models,
            labels=labels,
            repository=repository,
            config=config,
            launcher=launcher,
            **settings,
        )
        self._app: web.Application | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    async def start(self) -> None:
        """Start every model's minimum of workers; return when they are ready."""
        await self.service.start()

    async def shutdown(self, grace_period: float | None = None) -> None:
        """Stop taking requests, let queued ones finish, then stop every worker."""
        await self.service.shutdown(grace_period)

    async def predict(
        self,
        data: bytes | str,
        *,
        model: str | None = None,
        content_type: str | None = None,
        top_n: int = 5,
        threshold: float = 0.5,
    ) -> dict[str, Any]:
        """Run one input through a model; the same JSON-able result as POST /predict.

        `model` is needed when several are served; `top_n` is for classification,
        `threshold` for detection.
        """
        return await self.service.predict(
            data, model=model, content_type=content_type, top_n=top_n, threshold=threshold
        )

    def request(
        self, name: str | None = None, version: int | None = None
    ) -> AbstractAsyncContextManager[Call]:
        """`Service.request`: one model request (lookup, admission, in-flight, metrics)."""
        return self.service.request(name, version)

    @property
    def app(self) -> web.Application:
        """The HTTP API as an aiohttp Application (mountable as a sub-application)."""
        if self._app is None:
            self._app = build_app(self.service)
        return self._app

    # -- state (the service's) -----------------------------------------------

    @property
    def config(self) -> ServerConfig:
        return self.service.config

    @property
    def metrics(self) -> Metrics:
        return self.service.metrics

    @property
    def repository(self) -> Repository:
        return self.service.repository

    @property
    def ready(self) -> bool:
        return self.service.ready

    @property
    def models(self) -> dict[str, ServedModel]:
        return self.service.models

    def model(self, name: str | None = None, version: int | None = None) -> ServedModel:
        return self.service.model(name, version)

    def status(self) -> dict[str, Any]:
        return self.service.status()

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
            self.service,
            items,
            model=model,
            top_n=top_n,
            threshold=threshold,
            concurrency=concurrency,
        )
