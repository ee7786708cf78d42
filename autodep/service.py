"""`Service`: the models, their pools and codecs, as one object.

This is the core that every front end calls, through `Service.request`: the
HTTP layer (`autodep.http`) and the gRPC service (`autodep.grpc`) only
translate requests into these calls, and `autodep.Autodep` (the embedding API)
holds a Service and its aiohttp application. Nothing here imports a front end.
See docs/architecture.md for one request followed through.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Self

from autodep.autoscale.manager import Autoscaler
from autodep.call import Call
from autodep.codecs import Codec, Options, Payload, codec_for
from autodep.config import (
    ModelConfig,
    ModelSource,
    PoolSettings,
    ServerConfig,
    cpu_count,
    server_config,
)
from autodep.errors import AutodepError, ConfigError, ShuttingDown
from autodep.metrics import Metrics
from autodep.optimize import plan as plans
from autodep.optimize.background import BackgroundSearch
from autodep.optimize.candidates import AS_GIVEN
from autodep.optimize.plan import Plan
from autodep.optimize.resolve import Variant, pending_search, resolve
from autodep.optimize.search import Job
from autodep.optimize.serving import find_plan, variant_of
from autodep.pool.cores import CoreAllocator
from autodep.pool.items import Inferred, Item
from autodep.pool.launcher import Launcher, ProcessLauncher
from autodep.pool.pool import ModelPool
from autodep.repository.manager import Repository
from autodep.repository.policy import select_versions
from autodep.repository.served import ServedModel
from autodep.worker.spec import WorkerSpec

log = logging.getLogger(__name__)


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
        self.config = config or server_config(models, labels, repository, **settings)
        if not self.config.models and self.config.model_control_mode == "none":
            raise ConfigError("no model to serve: give a model file or a repository config")
        self._launcher = launcher or ProcessLauncher()
        self._variants: dict[tuple[str, str], Variant] = {}  # by (model, file): what workers load
        # by (model, file): the serving plan, or why there is none
        self._plans: dict[tuple[str, str], tuple[Plan | None, str | None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.metrics = Metrics()
        self.cores = CoreAllocator()  # every pool's workers own disjoint cores of this host
        # Owns the model versions and the routing table; loads, unloads and rolls out.
        self.repository = Repository(
            self.config, self._serve_model, self.metrics, prepare=self._prepare
        )
        self.metrics.watch(
            lambda: {name: m.pool.stats() for name, m in self.repository.models().items()}
        )
        self._executor: ThreadPoolExecutor | None = None
        # Searches a first start did not wait for (None: there were none).
        self.optimizer: BackgroundSearch | None = None
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
        loop = self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(
            max_workers=max(2, cpu_count()), thread_name_prefix="autodep-encode"
        )
        versions = [v for entry in self.config.models for v in select_versions(entry).values()]
        async with AsyncExitStack() as undo:
            undo.push_async_callback(self._close_pools)  # if anything below fails
            # Boot the forkserver (it imports torch once); then find each model version's
            # variant (autodep.optimize): cached, or searched now, one after the other
            # so that nothing disturbs a search's measurements.
            await loop.run_in_executor(self._executor, self._launcher.prepare)
            # Unless --optimize-wait: a search the cache has not done yet runs after the start,
            # while the file as given serves (autodep.optimize.background).
            later = await loop.run_in_executor(self._executor, self._searches_to_defer, versions)
            await loop.run_in_executor(
                self._executor, lambda: [self._prepare(v, _key(v) not in later) for v in versions]
            )
            for model in self.config.models:
                self.repository.prepare(model)
            await self.repository.start()
            undo.pop_all()  # started: shutdown() closes the pools from now on
        if self._autoscale:
            self._autoscaler = Autoscaler(
                self.repository.pools,  # asked at every tick: versions come and go
                budget=self.config.worker_budget,
                tick_s=self.config.tick,
            )
            self.repository.scale_with(self._autoscaler)
            self._autoscaler.start()
        self._accepting = True
        self.started_at = time.monotonic()
        if later:
            self.optimizer = BackgroundSearch(self.config, self._launcher, self.repository.refresh)
            searches = [
                (
                    entry,
                    [
                        (v, later[_key(v)])
                        for v in select_versions(entry).values()
                        if _key(v) in later
                    ],
                )
                for entry in self.config.models
            ]
            self.optimizer.start([(entry, jobs) for entry, jobs in searches if jobs])

    async def shutdown(self, grace_period: float | None = None) -> None:
        """Stop taking requests, let queued ones finish, then stop every worker."""
        grace = self.config.grace_period if grace_period is None else grace_period
        # 1. Refuse new requests (503) from now on; no more scaling.
        self._accepting = False
        if self._autoscaler is not None:
            self._autoscaler.stop()
        if self.optimizer is not None:
            await self.optimizer.stop()  # a search's child is killed, its pools closed
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

    @asynccontextmanager
    async def request(
        self, name: str | None = None, version: int | None = None
    ) -> AsyncIterator[Call]:
        """The one way into a model, for every front end (HTTP, V2, gRPC, embedding).

            async with service.request(name, version) as call:   # 404, 503 here
                body = await read_the_body()                      # the version is held
                result = await call.predict(payload, options)

        On entry: the model version is looked up (`name` None: the only model;
        `version` None: its newest ready version), the request admitted
        before any body is read (a refusal costs next to nothing), and the
        version held in flight until the block ends, so that a reload does not
        retire it under the request. On exit, whatever the outcome, the request
        is counted by model and status code and timed.
        """
        began = time.monotonic()
        label, code = "unknown", 500  # bounded label values: a served model's name, or this
        try:
            served = self.model(name, version)
            label = served.config.name
            with served.in_flight.request():  # no await between lookup and hold
                self.admit(served)
                call = Call(served, self.dispatch, self.reserve, self._executor)
                call.admit_items(1)  # its place in the queue, while its body is read
                try:
                    yield call
                finally:
                    call.release()
            code = 200
        except AutodepError as exc:
            code = exc.status
            if label == "unknown" and name in self.repository.models():
                label = name  # a known model, an unknown version
            raise
        except asyncio.CancelledError:
            code = 499  # the client went away (nginx's code for it)
            raise
        finally:
            self.metrics.observe_request(label, code, time.monotonic() - began)

    def admit(self, served: ServedModel) -> None:
        """Raise now (503) if the model would refuse one more request."""
        if not self._accepting:
            raise ShuttingDown("the server is not accepting requests (starting or shutting down)")
        served.pool.admit()

    def reserve(self, served: ServedModel, items: int) -> int:
        """Hold queue room for a request's `items` (503 if there is none): how many were held."""
        served.pool.reserve(items)
        return items

    async def dispatch(self, served: ServedModel, item: Item, reserved: bool = False) -> Inferred:
        """One item to the version's pool: a payload (decoded in a worker) or tensors.

        `Call.infer` comes here (`reserved`: `reserve` held its room); the cluster's
        `ClusterService` overrides it (and `admit`, `reserve`) to send the item to
        another node instead.
        """
        if isinstance(item, Payload):
            served.codec.decoder.check(item)  # a wrong kind of body is refused before queueing
        return await served.pool.infer(item, reserved=reserved)

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
        async with self.request(model) as call:
            options = Options(top_n=top_n, threshold=threshold)
            return await call.predict(Payload.of(data, content_type), options)

    def model(self, name: str | None = None, version: int | None = None) -> ServedModel:
        """A served model by name (None: the only one): its newest ready version, or `version`."""
        return self.repository.get(name, version)

    @property
    def models(self) -> dict[str, ServedModel]:
        """The newest ready version of each model, by name (a copy)."""
        return self.repository.models()

    # -- state ---------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._accepting and all(m.pool.ready for m in self.models.values())

    def status(self) -> dict[str, Any]:
        models = {
            name: {**_model_status(m, self.config.given(m.config)), "version": m.version}
            for name, m in self.models.items()
        }
        searches = {} if self.optimizer is None else self.optimizer.progress
        for name, progress in searches.items():
            if name in models:
                models[name]["optimize"] = progress.status()
        return {"models": models, "repository": self.repository.status()}

    def _searches_to_defer(self, versions: Sequence[ModelConfig]) -> dict[tuple[str, str], Job]:
        """The versions whose search a first start does not wait for, with their search."""
        if self.config.optimize_wait:
            return {}
        jobs = {_key(v): pending_search(v, self.config) for v in versions}
        return {key: job for key, job in jobs.items() if job is not None}

    def _prepare(self, model: ModelConfig, search_now: bool = True) -> Codec:
        """A model version's codec, its variant and serving plan found on the way (blocking:
        in an executor; the plan is measured by workers that the event loop drives). Without
        `search_now`, the file as given (the search runs in the background)."""
        key = _key(model)
        if not search_now:
            searching = "served as given while the optimizer searches (see optimize)"
            self._variants[key] = Variant(AS_GIVEN, note=searching)
            self._plans[key] = (None, "no plan yet: the optimizer searches in the background")
            return codec_for(model)
        variant = resolve(model, self.config)
        plan, note = None, None
        if variant.entry is not None and self._loop is not None:
            search = find_plan(model, self.config, variant, self._launcher)
            try:
                plan = asyncio.run_coroutine_threadsafe(search, self._loop).result()
            except Exception as exc:  # the defaults still serve: say why in /status
                note = f"no serving plan: {type(exc).__name__}: {exc}"
                log.warning("model %r: %s", model.name, note)
        if plan is not None:
            variant = variant_of(plan, variant)
        self._variants[key] = variant
        self._plans[key] = (plan, note)
        return codec_for(model)

    def _settings(self, model: ModelConfig, plan: Plan | None) -> PoolSettings:
        """The model's pool settings: the plan's, except where a setting was given."""
        return plans.apply(plan, self.config.settings_for(model), self.config.given(model))

    def _serve_model(self, model: ModelConfig, version: int, codec: Codec) -> ServedModel:
        """One model version with its (not yet started) pool of workers."""
        key = _key(model)
        variant = self._variants.get(key, Variant(AS_GIVEN))
        plan, note = self._plans.get(key, (None, None))
        settings = self._settings(model, plan)
        spec = _worker_spec(model, codec, settings, variant, self.config.trust_pt2_pickles)
        pool = ModelPool(spec, settings, self._launcher, self.metrics, self.cores)
        self.metrics.variant.labels(model.name, variant.name).set(1)
        return ServedModel(model, codec, pool, variant, version, plan=plan, plan_note=note)


def _key(model: ModelConfig) -> tuple[str, str]:
    """What a model version's variant and plan are kept by."""
    return (model.name, str(model.path))


def _worker_spec(
    model: ModelConfig,
    codec: Codec,
    settings: PoolSettings,
    variant: Variant,
    trust_pickles: bool,
) -> WorkerSpec:
    threads = settings.start_threads
    return WorkerSpec.of(
        model,
        threads,
        codec.decoder.example(),
        variant.spec(threads, settings.cores),
        trust_pickles=trust_pickles,
    )


def _model_status(served: ServedModel, given: frozenset[str]) -> dict[str, Any]:
    pool = served.pool
    return {
        "max_workers": pool.settings.max_workers,
        "min_workers": pool.settings.min_workers,
        "desired_workers": pool.desired,
        "queue_depth": pool.queue_depth,
        "ready": pool.ready,
        "restarts": pool.restarts,
        "variant": served.variant.status(),
        "plan": plans.status(
            served.plan,
            pool.settings,
            given,
            [w.cores for w in pool.workers],
            pool.cores.cores if pool.settings.threads is None else (),
            served.plan_note,
        ),
        "workers": [
            {
                "pid": w.pid,
                "state": w.state.value,
                "served": w.served,
                "startup_s": None if w.startup_s is None else round(w.startup_s, 4),
                "started_at": round(w.started_at, 3),
                "rss_bytes": w.rss_bytes(),
                "cores": list(w.cores),
            }
            for w in pool.workers
        ],
        "scaling": [
            {"at": e.at, "from": e.before, "to": e.after, "reason": e.reason}
            for e in reversed(pool.scaling_events)
        ],
    }
