"""The runtime model registry: load, unload and roll out model versions on ModelPools.

    load(entry) ─► per served version: LOADING ─ codec, pool, workers load + warm up
                       │ failed: FAILED (reason in the index); what served keeps serving
                       ▼
                   READY ─► routed: Service.request finds it (the newest ready one
                       │    per name; any ready one by number)
    replaced or        ▼
    unloaded ──►   DRAINING: out of the routes; requests that started before
                       │     the change finish (InFlight), then its queue drains,
                       ▼     all within the grace period
                   UNLOADED: workers stopped, their memory returned

A new version is routed only after its workers have passed their warm-up, and
the old one leaves the routes in the same step (no await in between), so every
request finds exactly one ready version and runs wholly on it. While a version
loads, its workers are reserved out of the autoscaler's budget and older
versions of the same model give up idle workers to make room, so the budget
covers old and new during the switch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from autodep.autoscale.manager import Autoscaler
from autodep.codecs import Codec, codec_for
from autodep.config import ModelConfig, ServerConfig, check_files, store_of
from autodep.errors import AutodepError, ConfigError, InvalidInput, ModelNotFound, ShuttingDown
from autodep.metrics import Metrics, VersionStats
from autodep.pool.pool import ModelPool
from autodep.repository.boundary import confine, repository_root
from autodep.repository.budget import make_room, room
from autodep.repository.entries import entry_for
from autodep.repository.errors import LoadFailed, ModelControlDisabled, OverBudget, reason
from autodep.repository.history import History
from autodep.repository.policy import select_versions
from autodep.repository.poll import Plan, Watcher
from autodep.repository.routes import Instance, Routes
from autodep.repository.served import ServedModel
from autodep.repository.versions import State

log = logging.getLogger(__name__)

MakeServed = Callable[[ModelConfig, int, Codec], ServedModel]


class Repository:
    def __init__(
        self,
        config: ServerConfig,
        make: MakeServed,
        metrics: Metrics,
        prepare: Callable[[ModelConfig], Codec] = codec_for,
    ) -> None:
        self.mode = config.model_control_mode
        self._config = config
        self._make = make
        # A new version's codec, and whatever else is slow to get ready (blocking).
        self._prepare = prepare
        self._autoscaler: Autoscaler | None = None  # once the Service has started one
        self._routes = Routes()
        self._root = repository_root(config)  # the folder a load request may name files in
        self._history = History(on_change=self._changed, on_forget=metrics.forget)
        self._entries: dict[str, ModelConfig] = {}  # the entry each model was loaded from
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._condition: asyncio.Condition | None = None  # created in the running loop
        self._watcher: Watcher | None = None
        self._loading = 0  # workers the loads in progress may start (see budget.room)
        self._stopping = False  # shutdown began: no load is accepted or finishes READY
        metrics.watch_versions(self.version_stats)

    # -- startup and shutdown ------------------------------------------------

    def prepare(self, entry: ModelConfig) -> None:
        """At startup: the entry's served versions, LOADING, their workers not started."""
        for number, version in select_versions(entry).items():
            record = self._history.new(entry.name, number)
            self._routes.add(Instance(record, self._make(version, number, codec_for(version))))
        self._entries[entry.name] = entry

    async def start(self) -> None:
        """Start the prepared versions' workers; raises the first failure."""
        loading = [i for i in self._routes.live() if i.record.state is State.LOADING]
        results = await asyncio.gather(
            *(i.served.pool.start() for i in loading), return_exceptions=True
        )
        for instance, result in zip(loading, results, strict=True):
            if isinstance(result, BaseException):
                instance.record.to(State.FAILED, reason(result))
            else:
                instance.record.to(State.READY, "loaded; workers warmed up")
                self._routes.route(instance)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if self.mode == "poll":
            self._watcher = Watcher(
                self._config.repository,
                list(self._entries.values()),
                self._config.repository_poll_s,
                self._apply,
                store_of(self._config),
            )
            self._watcher.start()

    def scale_with(self, autoscaler: Autoscaler) -> None:
        """Loads reserve their workers out of this autoscaler's budget from now on."""
        self._autoscaler = autoscaler

    async def stop(self) -> None:
        """Stop polling and the retirements in progress (shutdown then drains every pool).

        From now on a load is refused, and one still warming up ends FAILED, its
        workers stopped: shutdown would never drain a version that became READY later.
        """
        self._stopping = True
        if self._watcher is not None:
            await self._watcher.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- lookups -------------------------------------------------------------

    def get(self, name: str | None = None, version: int | None = None) -> ServedModel:
        """A model's newest ready version, or its ready version `version` (404 otherwise).

        `name` None: the only model served (several: 404 asking to name one).
        """
        return self._routes.get(name, version)

    def models(self) -> dict[str, ServedModel]:
        """The newest ready version of each model, by name (a copy)."""
        return self._routes.models()

    def pools(self) -> dict[str, ModelPool]:
        """The autoscaler's view: the pools of routed and draining versions (a copy)."""
        return self._routes.pools()

    def served(self) -> list[ServedModel]:
        """Every live version (for shutdown)."""
        return [i.served for i in self._routes.live()]

    # -- the index -----------------------------------------------------------

    @property
    def transitions(self) -> Counter[tuple[str, str]]:
        """Version state changes so far, by (model, state entered)."""
        return self._history.transitions

    def version_stats(self) -> VersionStats:
        return self._history.stats()

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """Triton's repository index: [{"name", "version", "state", "reason"}]."""
        return self._history.index(ready_only)

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"mode": self.mode, "versions": self._history.status()}
        if self._watcher is not None:
            status["poll"] = self._watcher.status()
        return status

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Return once predicate() holds after some transition (TimeoutError after timeout)."""
        if self._condition is None:
            self._condition = asyncio.Condition()
        changed = self._condition
        async with asyncio.timeout(timeout), changed:
            await changed.wait_for(predicate)

    # -- requests (the control routes) ---------------------------------------

    async def load(self, name: str, entry: ModelConfig | None = None) -> None:
        """Load a model, or reload it (a new file or settings) without failing a request.

        A given `entry` is the client's: its files must be inside the repository directory.
        """
        self._require_explicit("load")
        self._refuse_if_stopping()
        if entry is None:
            entry = entry_for(name, self._config, self._entries)
        elif entry.name != name:
            raise InvalidInput(f"the config names model {entry.name!r}, the route {name!r}")
        else:
            entry = confine(entry, self._root)
        await self._roll_out(entry)

    async def refresh(self, name: str) -> None:
        """Roll the model's entry out again, as a reload does, in any control mode: what its
        versions are served with has changed (autodep.optimize.background found a variant and
        a plan). Nothing to do once the model is unloaded."""
        entry = self._entries.get(name)
        if entry is not None:
            await self._roll_out(entry)

    async def unload(self, name: str) -> None:
        """Take a model out of service; return once its workers have stopped."""
        self._require_explicit("unload")
        await self._unload(name)

    # -- rollout -------------------------------------------------------------

    async def _roll_out(self, entry: ModelConfig) -> None:
        name = entry.name
        async with self._lock(name):
            try:
                check_files(entry, "load request")
            except ConfigError as exc:
                raise LoadFailed(exc.message) from None
            targets = select_versions(entry)
            # Counted against the budget with no await before the hold: never over it.
            needed = self._fits(name, targets.values())
            self._loading += needed
            try:
                fresh = await asyncio.gather(
                    *(self._load_version(config, number) for number, config in targets.items())
                )
            finally:
                self._loading -= needed
            ready = [i for i in fresh if i is not None]
            if self._stopping:  # versions ready before shutdown began are not routed now
                for instance in ready:
                    await instance.served.pool.close()
                    self._routes.remove(instance)
                    instance.record.to(State.FAILED, "the server is shutting down")
                self._refuse_if_stopping()
            numbers = {i.record.number for i in ready}
            # Replaced: older loads of the numbers that loaded now, and, once anything of
            # the new entry serves, the numbers its version_policy no longer names.
            retiring = [
                i
                for i in self._routes.routed(name)
                if i not in ready
                and (i.record.number in numbers or (ready and i.record.number not in targets))
            ]
            # No await from here to the routing: every request finds exactly one version.
            for old in retiring:
                old.record.to(State.DRAINING, f"replaced by {_loads(ready)}")
            for instance in ready:
                self._routes.route(instance)
            self._routes.publish(name)
            if ready:
                self._entries[name] = entry
            for old in retiring:
                self._track(self._retire(old))
        failed = sorted(set(targets) - numbers)
        if failed:
            serving = sorted({i.record.number for i in self._routes.routed(name)})
            raise LoadFailed(
                f"model {name!r} version {', '.join(map(str, failed))} failed to load: "
                f"{self._history.last_reason(name, failed[0])}; serving: "
                f"{', '.join(f'version {n}' for n in serving) or 'nothing'}"
            )

    async def _load_version(self, config: ModelConfig, number: int) -> Instance | None:
        """Load one version and pass its warm-up in at least one worker; None if it failed."""
        record = self._history.new(config.name, number)
        loop = asyncio.get_running_loop()
        try:
            codec = await loop.run_in_executor(None, self._prepare, config)
            served = self._make(config, number, codec)
        except Exception as exc:
            record.to(State.FAILED, reason(exc))
            return None
        instance = Instance(record, served)
        self._routes.add(instance)
        pool = served.pool
        workers = max(1, pool.settings.min_workers)
        # Reserved out of the autoscaler's budget while loading; older versions make room.
        self._reserve(workers)
        older = [i.served.pool for i in self._routes.routed(config.name)]
        others = [p for p in self._routes.pools().values() if p not in older]
        make_room(
            older + others,
            in_use=sum(p.live for p in self._routes.pools().values()),
            workers=workers,
            budget=self._config.worker_budget,
            number=number,
        )
        try:
            await pool.start(workers)
            self._refuse_if_stopping()
        except Exception as exc:
            await pool.close()
            self._routes.remove(instance)
            record.to(State.FAILED, reason(exc))
            return None
        except BaseException:
            await pool.close()
            self._routes.remove(instance)
            record.to(State.FAILED, "cancelled (the server is shutting down)")
            raise
        finally:
            self._release(workers)
        record.to(State.READY, "loaded; workers warmed up")
        return instance

    def _fits(self, name: str, versions: Iterable[ModelConfig]) -> int:
        """The workers these versions start (409 unless they fit in the worker budget)."""
        needed = sum(max(1, self._config.settings_for(v).min_workers) for v in versions)
        budget = self._config.worker_budget
        free = room(budget, self._routes.pools().values(), self._loading)
        if needed > free:
            raise OverBudget(
                f"model {name!r} needs {needed} worker(s) to load (workers.min of each "
                f"version), and the worker budget (--max-total-workers {budget}) has room "
                f"for {max(free, 0)}; unload a model or raise the budget"
            )
        return needed

    def _refuse_if_stopping(self) -> None:
        if self._stopping:
            raise ShuttingDown("the server is shutting down: no model is loaded any more")

    def _reserve(self, workers: int) -> None:
        if self._autoscaler is not None:
            self._autoscaler.reserve(workers)

    def _release(self, workers: int) -> None:
        if self._autoscaler is not None:
            self._autoscaler.release(workers)

    async def _unload(self, name: str) -> None:
        async with self._lock(name):
            instances = self._routes.routed(name)
            if not instances:
                raise ModelNotFound(f"model {name!r} is not loaded")
            for instance in instances:
                instance.record.to(State.DRAINING, "unload requested")
            self._routes.publish(name)
            self._entries.pop(name, None)
        await asyncio.gather(*(self._retire(i) for i in instances))

    async def _retire(self, instance: Instance) -> None:
        """Drain a version out of the routes (bounded by the grace period), then stop it."""
        loop = asyncio.get_running_loop()
        grace = self._config.grace_period
        deadline = loop.time() + grace
        # Out of the routes now: no new request can find it, so waiting for the ones
        # that hold it is enough.
        in_flight = instance.served.in_flight
        try:
            async with asyncio.timeout(grace):
                await in_flight.settled(in_flight.advance())
        except TimeoutError:
            log.warning(
                "model %r version %d: requests still running after %g s; stopping it",
                instance.record.model,
                instance.record.number,
                grace,
            )
        pool = instance.served.pool
        await pool.drain(max(0.0, deadline - loop.time()))
        await pool.close()
        self._routes.remove(instance)
        instance.record.to(State.UNLOADED, "unloaded; workers stopped")

    # -- poll mode -----------------------------------------------------------

    async def _apply(self, plan: Plan, entries: dict[str, ModelConfig]) -> None:
        """Act on what changed in the repository files (errors are logged, not raised)."""
        for name in plan.unload:
            await self._logged(self._unload(name))
        for name in plan.load:
            await self._logged(self._roll_out(entries[name]))

    async def _logged(self, change: Any) -> None:
        try:
            await change
        except AutodepError as exc:
            log.error("poll: %s", exc.message)

    # -- bookkeeping ---------------------------------------------------------

    def _changed(self) -> None:
        """After every version transition: wake wait_until()."""
        if self._condition is not None:
            self._track(_notify(self._condition))

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _track(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("repository task failed", exc_info=task.exception())

    def _require_explicit(self, action: str) -> None:
        if self.mode != "explicit":
            raise ModelControlDisabled(
                f"model {action} is not allowed in model control mode {self.mode!r}; "
                "start the server with --model-control-mode explicit"
                + (
                    " (in poll mode, change the repository files instead)"
                    if self.mode == "poll"
                    else ""
                )
            )


def _loads(ready: list[Instance]) -> str:
    return ", ".join(f"version {i.record.number} (load #{i.record.id})" for i in ready)


async def _notify(changed: asyncio.Condition) -> None:
    async with changed:
        changed.notify_all()
