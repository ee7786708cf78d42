"""`Service`: the models, their pools and codecs, as one object.

This is the core that every front end calls: the HTTP layer (`autodep.http`)
only translates requests into these calls, and `autodep.Autodep` adds the
aiohttp application on top. Nothing here imports a front end.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from autodep.autoscale.manager import Autoscaler
from autodep.codecs import Codec, Options, Payload, codec_for
from autodep.config import (
    ModelConfig,
    ServerConfig,
    build_config,
    cpu_count,
    load_repository,
    model_from_file,
)
from autodep.errors import ConfigError, InvalidInput, ModelNotFound, ShuttingDown
from autodep.metrics import Metrics
from autodep.optimize.candidates import AS_GIVEN
from autodep.optimize.resolve import Variant, resolve
from autodep.pool.items import Inferred, Item
from autodep.pool.launcher import Launcher, ProcessLauncher
from autodep.pool.pool import ModelPool
from autodep.repository.manager import Repository
from autodep.repository.policy import select_versions
from autodep.worker.spec import WorkerSpec

log = logging.getLogger(__name__)

ModelSource = str | Path | ModelConfig


@dataclass
class ServedModel:
    config: ModelConfig
    codec: Codec
    pool: ModelPool
    variant: Variant
    version: int = 1


class Service:
    """Serve one or more models from a pool of worker processes each.

    `models` is a TorchScript file, a `ModelConfig`, or a list of them;
    `repository` is a model repository YAML; `config` a whole `ServerConfig`.
    Other keyword arguments are `ServerConfig` fields (max_workers=4, ...).
    `autoscale=False` leaves the pools' sizes to the caller (`set_desired`), as
    the cluster controller does (autodep.cluster).
    """

    def __init__(
        self,
        models: ModelSource | Sequence[ModelSource] | None = None,
        *,
        labels: str | Path | None = None,
        repository: str | Path | None = None,
        config: ServerConfig | None = None,
        launcher: Launcher | None = None,
        autoscale: bool = True,
        **settings: Any,
    ) -> None:
        self.config = config or _server_config(models, labels, repository, settings)
        if not self.config.models and self.config.model_control_mode == "none":
            raise ConfigError("no model to serve: give a model file or a repository config")
        self._launcher = launcher or ProcessLauncher()
        self._models: dict[str, ServedModel] = {}  # the newest ready version of each model
        self._variants: dict[tuple[str, str], Variant] = {}  # by (model, file): what workers load
        self.metrics = Metrics()
        # Loads, unloads and rolls out versions at runtime; keeps self._models up to date.
        self.repository = Repository(
            self.config, self._models, self._serve_model, self.metrics, prepare=self._prepare
        )
        self.metrics.watch(lambda: {name: m.pool for name, m in self._models.items()})
        self._executor: ThreadPoolExecutor | None = None
        self._autoscaler: Autoscaler | None = None
        self._autoscale = autoscale
        self._accepting = False
        self.started_at: float | None = None

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    async def start(self) -> None:
        """Start every model's minimum of workers; return when they are ready."""
        loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(
            max_workers=max(2, cpu_count()), thread_name_prefix="autodep-encode"
        )
        versions = [v for entry in self.config.models for v in select_versions(entry).values()]
        try:
            # Boot the forkserver (it imports torch once); then find each model version's
            # variant (autodep.optimize): cached, or searched now, one after the other
            # so that nothing disturbs a search's measurements.
            await loop.run_in_executor(self._executor, self._launcher.prepare)
            await loop.run_in_executor(self._executor, lambda: [self._prepare(v) for v in versions])
        except BaseException:
            await self._close_pools()
            raise
        for model in self.config.models:
            self.repository.prepare(model)
        try:
            await self.repository.start()
        except BaseException:
            await self._close_pools()
            raise
        if self._autoscale:
            self._autoscaler = Autoscaler(
                self.repository.pools,  # a live view: versions come and go
                budget=self.config.worker_budget,
                tick_s=self.config.tick,
            )
            self.repository.autoscaler = self._autoscaler
            self._autoscaler.start()
        self._accepting = True
        self.started_at = time.monotonic()

    async def shutdown(self, grace_period: float | None = None) -> None:
        """Stop taking requests, let queued ones finish, then stop every worker."""
        grace = self.config.grace_period if grace_period is None else grace_period
        # 1. Refuse new requests (503) from now on; no more scaling.
        self._accepting = False
        if self._autoscaler is not None:
            self._autoscaler.stop()
        await self.repository.stop()  # no more polling, loading or retiring
        # 2. Let queued and running requests finish, for at most the grace period.
        await asyncio.gather(*(m.pool.drain(grace) for m in self.repository.served()))
        # 3. Stop the workers (each gets a few seconds, then is killed).
        await self._close_pools()

    async def _close_pools(self) -> None:
        await asyncio.gather(*(m.pool.close() for m in self.repository.served()))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # -- requests ------------------------------------------------------------

    async def predict(
        self,
        data: bytes | str,
        *,
        model: str | None = None,
        content_type: str | None = None,
        top_n: int = 5,
        threshold: float = 0.5,
    ) -> dict[str, Any]:
        """Run one input through a model; the same JSON-able result as POST /predict."""
        # Held from the lookup to the answer, so a reload does not retire the version found.
        with self.repository.in_flight.request():
            served = self.model(model)
            options = _options(top_n, threshold)
            inferred = await self.infer(served, Payload.of(data, content_type))
            return {"model": served.config.name, **await self.encode(served, inferred, options)}

    def admit(self, served: ServedModel) -> None:
        """Raise now (503) if the model would refuse one more request.

        Front ends call it before they read a body, so that under overload a
        refusal costs the server next to nothing.
        """
        if not self._accepting:
            raise ShuttingDown("the server is not accepting requests (starting or shutting down)")
        served.pool.admit()

    async def infer(self, served: ServedModel, item: Item) -> Inferred:
        """One request through the model's pool: a payload (decoded in the worker) or tensors."""
        self.admit(served)
        if isinstance(item, Payload):
            served.codec.decoder.check(item)  # a wrong kind of body is refused before queueing
        return await served.pool.infer(item)

    async def encode(
        self, served: ServedModel, inferred: Inferred, options: Options
    ) -> dict[str, Any]:
        """Output tensors into the JSON-able result (off the loop unless cheap)."""
        encoder = served.codec.encoder
        if encoder.runs_inline:
            return encoder.encode(inferred.outputs, inferred.meta, options)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, encoder.encode, inferred.outputs, inferred.meta, options
        )

    def model(self, name: str | None = None, version: int | None = None) -> ServedModel:
        """A served model by name (None: the only one): its newest ready version, or `version`."""
        if version is not None:
            return self.repository.version(self.model(name).config.name, version)
        if name is None:
            if len(self._models) == 1:
                return next(iter(self._models.values()))
            raise ModelNotFound(
                f"several models are served ({', '.join(self._models)}); "
                "name one: POST /predict/{model}"
            )
        try:
            return self._models[name]
        except KeyError:
            raise ModelNotFound(
                f"no model named {name!r}; served: {', '.join(self._models)}"
            ) from None

    @property
    def models(self) -> dict[str, ServedModel]:
        return dict(self._models)

    # -- state ---------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._accepting and all(m.pool.ready for m in self._models.values())

    def status(self) -> dict[str, Any]:
        models = {
            name: {**_model_status(m), "version": m.version} for name, m in self._models.items()
        }
        return {"models": models, "repository": self.repository.status()}

    def _prepare(self, model: ModelConfig) -> Codec:
        """A model version's codec, its variant found on the way (blocking: in an executor)."""
        self._variants[(model.name, str(model.path))] = resolve(model, self.config)
        return codec_for(model)

    def _serve_model(self, model: ModelConfig, version: int, codec: Codec) -> ServedModel:
        """One model version with its (not yet started) pool of workers."""
        variant = self._variants.get((model.name, str(model.path)), Variant(AS_GIVEN))
        spec = _worker_spec(model, codec, self.config, variant)
        pool = ModelPool(spec, self.config.settings_for(model), self._launcher, self.metrics)
        self.metrics.variant.labels(model.name, variant.name).set(1)
        return ServedModel(model, codec, pool, variant, version)


def _server_config(
    models: ModelSource | Sequence[ModelSource] | None,
    labels: str | Path | None,
    repository: str | Path | None,
    settings: dict[str, Any],
) -> ServerConfig:
    sources: list[ModelSource]
    if models is None:
        sources = []
    elif isinstance(models, (str, Path, ModelConfig)):
        sources = [models]
    else:
        sources = list(models)
    if labels is not None and len(sources) != 1:
        raise ConfigError("labels= goes with exactly one model file")
    configs = [s if isinstance(s, ModelConfig) else model_from_file(s, labels) for s in sources]
    if repository is not None:
        configs += load_repository(repository)
    where = {} if repository is None else {"repository": Path(repository)}
    return build_config(models=tuple(configs), **where, **settings)


def _worker_spec(
    model: ModelConfig, codec: Codec, config: ServerConfig, variant: Variant
) -> WorkerSpec:
    threads = config.settings_for(model).start_threads
    return WorkerSpec.of(
        model,
        threads,
        codec.decoder.example(),
        variant.spec(threads),
        trust_pickles=config.trust_pt2_pickles,
    )


def _options(top_n: Any, threshold: Any) -> Options:
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
        raise InvalidInput(f"top_n must be a whole number of at least 1, not {top_n!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise InvalidInput(f"threshold must be a number between 0 and 1, not {threshold!r}")
    if not (math.isfinite(threshold) and 0 <= threshold <= 1):
        raise InvalidInput(f"threshold must be between 0 and 1, not {threshold!r}")
    return Options(top_n=top_n, threshold=float(threshold))


def _model_status(served: ServedModel) -> dict[str, Any]:
    pool = served.pool
    return {
        "max_workers": pool.settings.max_workers,
        "min_workers": pool.settings.min_workers,
        "desired_workers": pool.desired,
        "queue_depth": pool.queue_depth,
        "ready": pool.ready,
        "restarts": pool.restarts,
        "variant": served.variant.status(),
        "workers": [
            {
                "pid": w.pid,
                "state": w.state.value,
                "served": w.served,
                "startup_s": None if w.startup_s is None else round(w.startup_s, 4),
                "started_at": round(w.started_at, 3),
                "rss_bytes": w.rss_bytes(),
            }
            for w in pool.workers
        ],
        "scaling": [
            {"at": e.at, "from": e.before, "to": e.after, "reason": e.reason}
            for e in reversed(pool.scaling_events)
        ],
    }
