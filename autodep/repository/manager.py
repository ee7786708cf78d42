"""The runtime model registry: load, unload and roll out model versions on ModelPools.

    load(entry) ─► per served version: LOADING ─ codec, pool, workers load + warm up
                       │ failed: FAILED (reason in the index); what served keeps serving
                       ▼
                   READY ─► routed: Service.model() finds it (the newest ready one
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from autodep.codecs import Codec, codec_for
from autodep.config import ModelConfig, ServerConfig, check_files, load_repository
from autodep.errors import AutodepError, ConfigError, InvalidInput, ModelNotFound
from autodep.metrics import Metrics
from autodep.repository.boundary import confine, repository_root
from autodep.repository.inflight import InFlight
from autodep.repository.policy import select_versions
from autodep.repository.poll import Plan, Watcher
from autodep.repository.retention import kept
from autodep.repository.versions import ModelVersion, State

if TYPE_CHECKING:
    from autodep.autoscale.manager import Autoscaler
    from autodep.pool.pool import ModelPool
    from autodep.service import ServedModel

log = logging.getLogger(__name__)

MakeServed = Callable[[ModelConfig, int, Codec], "ServedModel"]


class ModelControlDisabled(AutodepError):
    """Load and unload requests while --model-control-mode is not `explicit`."""

    status = 400


class LoadFailed(AutodepError):
    """A model (version) could not be loaded or failed its warm-up; the old one serves on."""

    status = 400


@dataclass(eq=False)
class Instance:
    """A loaded version: its lifecycle record and what serves it."""

    record: ModelVersion
    served: ServedModel

    @property
    def key(self) -> str:
        """Its name in the autoscaler's view (several loads of one model may coexist)."""
        return f"{self.record.model}/{self.record.number}#{self.record.id}"


class Repository:
    def __init__(
        self,
        config: ServerConfig,
        serving: dict[str, ServedModel],
        make: MakeServed,
        metrics: Metrics,
        prepare: Callable[[ModelConfig], Codec] = codec_for,
    ) -> None:
        self.mode = config.model_control_mode
        self._config = config
        self._serving = serving  # Service._models: the newest ready version of each model
        self._make = make
        # A new version's codec, and whatever else is slow to get ready (blocking).
        self._prepare = prepare
        self._root = repository_root(config)  # the folder a load request may name files in
        self.in_flight = InFlight()
        self.autoscaler: Autoscaler | None = None  # set once the Service has started one
        # The autoscaler's view: pools of routed and draining versions.
        self.pools: dict[str, ModelPool] = {}
        self._instances: list[Instance] = []  # every live (loading, ready, draining) version
        self._records: list[ModelVersion] = []  # what the index shows
        self._entries: dict[str, ModelConfig] = {}  # the entry each model was loaded from
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed: asyncio.Condition | None = None
        self._watcher: Watcher | None = None
        self.transitions: Counter[tuple[str, str]] = Counter()
        self._metrics = metrics
        metrics.registry.register(_VersionCollector(self))

    # -- startup and shutdown ------------------------------------------------

    def prepare(self, entry: ModelConfig) -> None:
        """At startup: the entry's served versions, LOADING, their workers not started."""
        for number, version in select_versions(entry).items():
            record = ModelVersion(entry.name, number, on_change=self._on_change)
            self._instances.append(
                Instance(record, self._make(version, number, codec_for(version)))
            )
        self._entries[entry.name] = entry

    async def start(self) -> None:
        """Start the prepared versions' workers; raises the first failure."""
        loading = [i for i in self._instances if i.record.state is State.LOADING]
        results = await asyncio.gather(
            *(i.served.pool.start() for i in loading), return_exceptions=True
        )
        for instance, result in zip(loading, results, strict=True):
            if isinstance(result, BaseException):
                instance.record.to(State.FAILED, _reason(result))
            else:
                instance.record.to(State.READY, "loaded; workers warmed up")
                self._route(instance)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if self.mode == "poll":
            self._watcher = Watcher(
                self._config.repository,
                list(self._entries.values()),
                self._config.repository_poll_s,
                self._apply,
            )
            self._watcher.start()

    def served(self) -> list[ServedModel]:
        """Every live version (for shutdown)."""
        return [i.served for i in self._instances]

    async def stop(self) -> None:
        """Stop polling and the retirements in progress (shutdown then drains every pool)."""
        if self._watcher is not None:
            await self._watcher.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- requests (the routes) -----------------------------------------------

    async def load(self, name: str, entry: ModelConfig | None = None) -> None:
        """Load a model, or reload it (a new file or settings) without failing a request.

        A given `entry` is the client's: its files must be inside the repository directory.
        """
        self._require_explicit("load")
        if entry is None:
            entry = self._entry_for(name)
        elif entry.name != name:
            raise InvalidInput(f"the config names model {entry.name!r}, the route {name!r}")
        else:
            entry = confine(entry, self._root)
        await self._roll_out(entry)

    async def unload(self, name: str) -> None:
        """Take a model out of service; return once its workers have stopped."""
        self._require_explicit("unload")
        await self._unload(name)

    def version(self, name: str, number: int) -> ServedModel:
        ready = [i for i in self._routed(name) if i.record.number == number]
        if not ready:
            numbers = sorted({i.record.number for i in self._routed(name)})
            raise ModelNotFound(
                f"model {name!r} has no ready version {number}; ready: "
                f"{', '.join(map(str, numbers)) or 'none'}"
            )
        return max(ready, key=lambda i: i.record.id).served

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """Triton's repository index: [{"name", "version", "state", "reason"}]."""
        records = sorted(self._records, key=lambda r: (r.model, r.number, r.id))
        return [r.index_entry() for r in records if not ready_only or r.state is State.READY]

    def status(self) -> dict[str, Any]:
        records = sorted(self._records, key=lambda r: (r.model, r.number, r.id))
        status: dict[str, Any] = {
            "mode": self.mode,
            "versions": [{"name": r.model, **r.status()} for r in records],
        }
        if self._watcher is not None:
            status["poll"] = self._watcher.status()
        return status

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Return once predicate() holds after some transition (TimeoutError after timeout)."""
        changed = self._condition()
        async with asyncio.timeout(timeout), changed:
            await changed.wait_for(predicate)

    # -- rollout -------------------------------------------------------------

    async def _roll_out(self, entry: ModelConfig) -> None:
        name = entry.name
        async with self._lock(name):
            try:
                check_files(entry, "load request")
            except ConfigError as exc:
                raise LoadFailed(exc.message) from None
            targets = select_versions(entry)
            fresh = await asyncio.gather(
                *(self._load_version(config, number) for number, config in targets.items())
            )
            ready = [i for i in fresh if i is not None]
            numbers = {i.record.number for i in ready}
            # Replaced: older loads of the numbers that loaded now, and, once anything of
            # the new entry serves, the numbers its version_policy no longer names.
            retiring = [
                i
                for i in self._routed(name)
                if i not in ready
                and (i.record.number in numbers or (ready and i.record.number not in targets))
            ]
            for old in retiring:
                old.record.to(State.DRAINING, f"replaced by {self._loads(ready)}")
            for instance in ready:
                self._route(instance)
            self._publish(name)
            generation = self.in_flight.advance()
            if ready:
                self._entries[name] = entry
            for old in retiring:
                self._track(self._retire(old, generation))
        failed = sorted(set(targets) - numbers)
        if failed:
            serving = sorted({i.record.number for i in self._routed(name)})
            raise LoadFailed(
                f"model {name!r} version {', '.join(map(str, failed))} failed to load: "
                f"{self._last_reason(name, failed[0])}; serving: "
                f"{', '.join(f'version {n}' for n in serving) or 'nothing'}"
            )

    async def _load_version(self, config: ModelConfig, number: int) -> Instance | None:
        """Load one version and pass its warm-up in at least one worker; None if it failed."""
        record = ModelVersion(config.name, number, on_change=self._on_change)
        loop = asyncio.get_running_loop()
        try:
            codec = await loop.run_in_executor(None, self._prepare, config)
            served = self._make(config, number, codec)
        except Exception as exc:
            record.to(State.FAILED, _reason(exc))
            return None
        instance = Instance(record, served)
        self._instances.append(instance)
        pool = served.pool
        workers = max(1, pool.settings.min_workers)
        self._make_room(name=config.name, workers=workers, number=number)
        try:
            await pool.start(workers)
        except Exception as exc:
            await pool.close()
            self._instances.remove(instance)
            record.to(State.FAILED, _reason(exc))
            return None
        except BaseException:
            await pool.close()
            self._instances.remove(instance)
            record.to(State.FAILED, "cancelled (the server is shutting down)")
            raise
        finally:
            self._reserve(-workers)
        record.to(State.READY, "loaded; workers warmed up")
        return instance

    def _make_room(self, name: str, workers: int, number: int) -> None:
        """Reserve a loading version's workers; older versions of the model shrink to fit."""
        self._reserve(workers)
        budget = self._config.worker_budget
        excess = sum(p.live for p in self.pools.values()) + workers - budget
        for old in self._routed(name):
            pool = old.served.pool
            give = min(excess, pool.live - 1)
            if give > 0:
                pool.set_desired(
                    pool.live - give,
                    f"version {number} is loading: making room in the budget of {budget} workers",
                )
                excess -= give

    def _reserve(self, workers: int) -> None:
        if self.autoscaler is not None:
            self.autoscaler.budget -= workers

    async def _unload(self, name: str) -> None:
        async with self._lock(name):
            instances = self._routed(name)
            if not instances:
                raise ModelNotFound(f"model {name!r} is not loaded")
            for instance in instances:
                instance.record.to(State.DRAINING, "unload requested")
            self._publish(name)
            self._entries.pop(name, None)
            generation = self.in_flight.advance()
        await asyncio.gather(*(self._retire(i, generation) for i in instances))

    async def _retire(self, instance: Instance, generation: int) -> None:
        """Drain a version out of the routes (bounded by the grace period), then stop it."""
        loop = asyncio.get_running_loop()
        grace = self._config.grace_period
        deadline = loop.time() + grace
        try:
            async with asyncio.timeout(grace):
                await self.in_flight.settled(generation)
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
        self.pools.pop(instance.key, None)
        self._instances.remove(instance)
        instance.record.to(State.UNLOADED, "unloaded; workers stopped")

    async def _apply(self, plan: Plan, entries: dict[str, ModelConfig]) -> None:
        """Poll mode: act on what changed in the repository."""
        for name in plan.unload:
            await self._try(self._unload(name))
        for name in plan.load:
            await self._try(self._roll_out(entries[name]))

    async def _try(self, change: Any) -> None:
        try:
            await change
        except AutodepError as exc:
            log.error("poll: %s", exc.message)

    # -- bookkeeping ---------------------------------------------------------

    def _route(self, instance: Instance) -> None:
        self.pools[instance.key] = instance.served.pool
        self._publish(instance.record.model)

    def _publish(self, name: str) -> None:
        """Service.model(name) finds the newest ready version, or nothing."""
        routed = self._routed(name)
        if routed:
            self._serving[name] = max(routed, key=lambda i: (i.record.number, i.record.id)).served
        else:
            self._serving.pop(name, None)

    def _routed(self, name: str) -> list[Instance]:
        return [
            i for i in self._instances if i.record.model == name and i.record.state is State.READY
        ]

    def _on_change(self, record: ModelVersion) -> None:
        if record not in self._records:
            self._records.append(record)
        self.transitions[(record.model, record.state.value)] += 1
        before = {r.model for r in self._records}
        self._records = kept(self._records)
        for name in before - {r.model for r in self._records}:
            self._forget(name)
        changed = self._changed
        if changed is not None:
            self._track(_notify(changed))

    def _forget(self, name: str) -> None:
        """A model with no version left in the history: drop its metric series too."""
        for key in [k for k in self.transitions if k[0] == name]:
            del self.transitions[key]
        self._metrics.forget(name)

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

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

    def _loads(self, ready: list[Instance]) -> str:
        return ", ".join(f"version {i.record.number} (load #{i.record.id})" for i in ready)

    def _last_reason(self, name: str, number: int) -> str:
        failed = [r for r in self._records if (r.model, r.number) == (name, number)]
        return failed[-1].reason if failed else "unknown"

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

    def _entry_for(self, name: str) -> ModelConfig:
        """A load without a config: the repository YAML's entry, else the current one."""
        path = self._config.repository
        if path is not None:
            try:
                entries = {e.name: e for e in load_repository(path)}
            except ConfigError as exc:
                raise LoadFailed(exc.message) from None
            if name in entries:
                return entries[name]
        if name in self._entries:
            return self._entries[name]
        where = f" nor in {path}" if path is not None else ""
        raise ModelNotFound(
            f"no model named {name!r} is loaded{where}; send its entry as "
            '{"parameters": {"config": "<JSON model entry>"}}'
        )


async def _notify(changed: asyncio.Condition) -> None:
    async with changed:
        changed.notify_all()


def _reason(error: BaseException) -> str:
    if isinstance(error, AutodepError):
        return error.message
    return f"{type(error).__name__}: {error}"


class _VersionCollector(Collector):
    def __init__(self, repository: Repository) -> None:
        self._repository = repository

    def collect(self) -> Iterator[Metric]:
        versions = GaugeMetricFamily(
            "autodep_model_versions",
            "Model versions by state (loading, ready, draining, unloaded, failed).",
            labels=["model", "version", "state"],
        )
        counts = Counter((r.model, str(r.number), r.state.value) for r in self._repository._records)
        for labels, count in sorted(counts.items()):
            versions.add_metric(list(labels), count)
        transitions = CounterMetricFamily(
            "autodep_model_version_transitions",
            "Model version state changes, by the state entered.",
            labels=["model", "state"],
        )
        for (model, state), count in sorted(self._repository.transitions.items()):
            transitions.add_metric([model, state], count)
        yield from (versions, transitions)
