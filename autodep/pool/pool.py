"""The resource manager of one model: a queue of requests and a pool of workers.

Data flow:

    infer(item) ──► queue (deque of Pending, at most max_queue; full → 503)
                          │  _dispatch(): while a worker is idle, take up to
                          │  max_batch_size requests as one batch, and place it
                          │  (cores.placement: alone → every core of the pool;
                          │  under load → the worker's own cores); saturated (a full
                          │  batch waits, no worker idle): a busy worker's next batches
                          ▼
                    WorkerHandle.run(batch, threads, cores)
                          │  payload bytes / tensors ──► shared in-buffer ──┐
                          │  {"op": "run"} ──► socket ──────────────────────┤  worker process:
                          │                                                 ▼  decode, model(batch)
                          │  tensors ◄── shared out-buffer ─────────────────┤
                          │  {"op": "result"} ◄── socket ◄──────────────────┘
                          ▼
            each request's future gets its own outputs (or its own decode error)

    Each worker owns cores from the service's `CoreAllocator` (autodep.pool.cores)
    from its start to its exit, disjoint from every other worker's while there are
    enough cores. The autoscaler (autodep.autoscale) sets `desired` every tick; the pool
    starts or stops workers to match it, stopping only idle ones. A request for
    a model with no worker starts one at once (cold start).

    A worker's death (`_on_worker_exit`, called once the handle has seen both
    the process sentinel and the end of its socket) puts the batch it was
    running (and those it held) back at the head of the queue, before
    anything else is dispatched, and starts exactly one replacement. A request
    that was in a dead batch runs alone from then on, so that a request which
    itself kills workers is found out: it is failed once MAX_ATTEMPTS workers
    have died while running it alone.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from autodep.autoscale.policy import Observation
from autodep.config import PoolSettings
from autodep.errors import (
    PayloadTooLarge,
    QueueFull,
    RequestTimeout,
    ShuttingDown,
    Unavailable,
    WorkerError,
    WorkerStartError,
)
from autodep.metrics import Metrics, PoolStats
from autodep.pool.batching import batch_to_take
from autodep.pool.cores import CoreAllocator, placement
from autodep.pool.handle import BatchResult, WorkerHandle, WorkerState
from autodep.pool.items import Inferred, Item
from autodep.pool.launcher import Launcher
from autodep.pool.shm import BufferOverflow
from autodep.worker.spec import WorkerSpec

log = logging.getLogger(__name__)

SCALING_HISTORY = 20  # scaling decisions kept for /status
MAX_ATTEMPTS = 2  # a request that killed two workers running it alone is failed, not retried
RESTART_BACKOFF = (0.5, 30.0)  # seconds: first and longest wait before restarting a failing model


@dataclass(frozen=True)
class ScalingEvent:
    at: float  # wall-clock time
    before: int
    after: int
    reason: str


@dataclass(eq=False)
class Pending:
    item: Item
    future: asyncio.Future[Inferred]
    enqueued: float = field(default_factory=time.monotonic)
    deaths: int = 0  # workers that died (unasked) while running this request
    deaths_alone: int = 0  # ... of which while running it alone: those it may have caused

    @property
    def suspect(self) -> bool:
        """It was in a batch whose worker died: it runs alone until it is answered."""
        return self.deaths > 0


class ModelPool:
    def __init__(
        self,
        spec: WorkerSpec,
        settings: PoolSettings,
        launcher: Launcher,
        metrics: Metrics | None = None,
        cores: CoreAllocator | None = None,
    ) -> None:
        self.spec = spec
        # Shared with the service's other pools, so that workers of all models own disjoint cores.
        self.cores = cores or CoreAllocator()
        self.settings = settings
        self._launcher = launcher
        self._metrics = metrics or Metrics()
        self._loop = asyncio.get_running_loop()
        # Bounded so that a burst beyond what the workers can absorb is refused
        # at once (503 + Retry-After) instead of piling up latency for everyone.
        self._queue: deque[Pending] = deque()
        self._workers: list[WorkerHandle] = []
        # The batches each busy worker has, in the order sent: the first runs, the others wait.
        self._running: dict[WorkerHandle, list[list[Pending]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._settle_waiters: list[asyncio.Future[None]] = []  # see settled()
        self._closing = False
        self._drained = asyncio.Event()
        self._batch_timer: asyncio.TimerHandle | None = None
        self._restart_timer: asyncio.TimerHandle | None = None
        self._backoff = RESTART_BACKOFF[0]
        self.last_start_error: WorkerStartError | None = None
        self.restarts = 0  # workers that died unasked and were replaced
        self.started = 0  # workers that became ready
        self.retried = 0  # requests put back in the queue by a worker's death
        # Requests refused for a full queue while every worker the pool may have served: its
        # workers, not a start or a scale-up under way, were what could not keep up.
        self.overflowed = 0
        self.desired = settings.min_workers
        self.scaling_events: deque[ScalingEvent] = deque(maxlen=SCALING_HISTORY)
        self.scale_ups = self.scale_downs = 0
        self.service_s: float | None = None  # moving average of compute time per request
        # Traffic since the last observation, for the autoscaler.
        self._arrivals = 0
        self._busy_s = 0.0
        self._in_flight = 0
        self._reserved = 0  # queue room held for requests admitted whole (see reserve)
        self._observed_at = time.monotonic()

    @property
    def name(self) -> str:
        return self.spec.model

    def stats(self) -> PoolStats:
        """A frozen snapshot for /metrics."""
        return PoolStats(
            workers={
                state.value: self.count(state)
                for state in WorkerState
                if state is not WorkerState.EXITED
            },
            queue_depth=self.queue_depth,
            restarts=self.restarts,
            desired=self.desired,
            scale_ups=self.scale_ups,
            scale_downs=self.scale_downs,
        )

    # -- public --------------------------------------------------------------

    async def start(self, workers: int | None = None) -> None:
        """Start `workers` (default min_workers) and wait until they are ready (raises if one
        fails). The autoscaler's next decisions may then change the count."""
        count = self.settings.min_workers if workers is None else workers
        self.desired = max(self.desired, count)
        starts = [self._start(self._new_worker()) for _ in range(count)]
        results = await asyncio.gather(*starts, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def admit(self, items: int = 1) -> None:
        """Raise now (503) if `items` more requests would be refused: call it before reading a
        body. Room held by `reserve` counts as taken."""
        if self._closing:
            raise ShuttingDown("the server is shutting down; retry on another instance")
        if self.last_start_error is not None and not self.live:
            raise Unavailable(f"{self.last_start_error.message}; retrying soon", retry_after=5)
        waiting = self.queue_depth + self._reserved
        if waiting + items > self.settings.max_queue:
            if self.count(WorkerState.IDLE, WorkerState.BUSY) >= self.settings.max_workers:
                self.overflowed += 1
            more = "" if items == 1 else f", no room for {items} more of this request's items"
            raise QueueFull(
                f"model {self.name!r} has {waiting} requests waiting or arriving "
                f"(max_queue={self.settings.max_queue}){more}; retry later"
            )

    def reserve(self, items: int) -> None:
        """Admit a request's `items` as a whole and hold their room in the queue until each is
        queued by `infer(..., reserved=True)` or given back by `release`.

        Synchronous (no await between the check and the hold): a request either fits whole
        or is refused before any of its items is parsed, tasked or queued.
        """
        self.admit(items)
        self._reserved += items

    @property
    def reserved(self) -> int:
        """Queue places held by admitted requests whose items are not queued yet (bodies
        being read, items being parsed)."""
        return self._reserved

    def release(self, items: int) -> None:
        """Give back room that `reserve` held and no item used (the request ended early)."""
        self._reserved -= items

    async def infer(self, item: Item, *, reserved: bool = False) -> Inferred:
        """Queue one request (a payload or input tensors) and wait for its outputs.

        `reserved`: its room was held by `reserve`, so only a shutdown refuses it now.
        """
        if reserved:
            self._reserved -= 1
            if self._closing:
                raise ShuttingDown("the server is shutting down; retry on another instance")
        else:
            self.admit()
        pending = Pending(item, self._loop.create_future())
        self._arrivals += 1
        self._queue.append(pending)
        self._drained.clear()
        self._dispatch()
        try:
            async with asyncio.timeout(self.settings.request_timeout):
                return await pending.future
        except TimeoutError:
            raise RequestTimeout(
                f"model {self.name!r} did not answer within {self.settings.request_timeout:g} s"
            ) from None

    @property
    def queue_depth(self) -> int:
        """Requests waiting: in the queue, or held by a busy worker (its next batches)."""
        return len(self._queue) + self.held

    @property
    def held(self) -> int:
        """Requests that wait in a busy worker (its next batches): they count as queued."""
        return sum(len(batch) for batches in self._running.values() for batch in batches[1:])

    @property
    def retrying(self) -> int:
        """Requests put back in the queue by a worker's death and not answered yet."""
        running = (p for batches in self._running.values() for batch in batches for p in batch)
        return sum(1 for p in (*self._queue, *running) if p.suspect and not p.future.done())

    @property
    def workers(self) -> list[WorkerHandle]:
        return list(self._workers)

    def count(self, *states: WorkerState) -> int:
        return sum(1 for w in self._workers if w.state in states)

    @property
    def ready(self) -> bool:
        """Ready: a worker can take work now, or one can be started."""
        if self._closing:
            return False
        if self.count(WorkerState.IDLE, WorkerState.BUSY):
            return True
        return self.last_start_error is None

    async def drain(self, timeout: float) -> None:
        """Refuse new requests and let queued and running ones finish, for at most timeout."""
        self._closing = True
        self._check_drained()
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
        except TimeoutError:
            log.warning(
                "model %r: %d requests still queued at shutdown", self.name, self.queue_depth
            )
        self._fail_queued(ShuttingDown("the server shut down before this request ran"))

    async def close(self) -> None:
        """Stop every worker (after `drain`, or at once)."""
        self._closing = True
        for timer in (self._restart_timer, self._batch_timer):
            if timer is not None:
                timer.cancel()
        self._fail_queued(ShuttingDown("the server shut down before this request ran"))
        await asyncio.gather(*(w.stop() for w in list(self._workers)))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- dispatch ------------------------------------------------------------

    def _dispatch(self) -> None:
        while self._drop_abandoned() and (worker := self._idle_worker()) is not None:
            count, wait = batch_to_take(
                queued=len(self._queue),
                oldest_wait=time.monotonic() - self._queue[0].enqueued,
                busy=self.count(WorkerState.BUSY),
                max_batch_size=self.settings.max_batch_size,
                max_queue_delay=self.settings.max_queue_delay,
            )
            if count == 0:  # under load: let the batch fill up for a moment
                if self._batch_timer is None:
                    self._batch_timer = self._loop.call_later(wait, self._on_batch_timer)
                break
            self._run(worker, self._take(count))
        # Saturated (no worker idle, a full batch waiting): a busy worker is given its next
        # batch now, and starts it the moment its current one is done, however long this
        # loop takes to see the result (it may be busy refusing a flood of requests). Below
        # saturation, batches go on filling while the workers work.
        size = self.settings.max_batch_size
        while (
            self._drop_abandoned()
            and len(self._queue) >= size
            and (worker := self._worker_taking_next()) is not None
        ):
            self._run(worker, self._take(size))
        self._cold_start()
        self._check_drained()

    def _on_batch_timer(self) -> None:
        self._batch_timer = None
        self._dispatch()

    def _drop_abandoned(self) -> bool:
        """Drop timed-out or cancelled requests from the head; is anything left?"""
        while self._queue and self._queue[0].future.done():
            self._queue.popleft()
        return bool(self._queue)

    def _take(self, count: int) -> list[Pending]:
        """Up to count requests from the head; a suspect goes alone."""
        if self._queue[0].suspect:
            return [self._queue.popleft()]
        batch: list[Pending] = []
        while self._queue and len(batch) < count and not self._queue[0].suspect:
            batch.append(self._queue.popleft())
        return batch

    def _idle_worker(self) -> WorkerHandle | None:
        """The most recently used idle worker, so that the others can time out."""
        idle = [w for w in self._workers if w.state is WorkerState.IDLE]
        return max(idle, key=lambda w: w.idle_since, default=None)

    def _worker_taking_next(self) -> WorkerHandle | None:
        """The busy worker with room for another batch that holds the fewest (of those, the
        one whose current batch began first)."""
        taking = [w for w in self._workers if w.takes_next]
        return min(taking, key=lambda w: (w.batches, w.busy_since), default=None)

    def _run(self, worker: WorkerHandle, batch: list[Pending]) -> None:
        batch = [p for p in batch if not p.future.done()]
        if not batch:
            return
        cores, threads = placement(
            own=worker.cores,
            free=self.cores.free,
            pool=self.cores.cores,
            lone=not self.count(WorkerState.BUSY) and not self._queue,
            configured=self.settings.threads,
        )
        now = time.monotonic()
        self._metrics.observe_dispatch(self.name, [now - p.enqueued for p in batch])
        self._in_flight += len(batch)
        self._running.setdefault(worker, []).append(batch)
        worker.run(
            [p.item for p in batch],
            threads,
            cores,
            functools.partial(self._done, worker, batch, now),
        )

    def _done(
        self,
        worker: WorkerHandle,
        batch: list[Pending],
        sent: float,
        result: BatchResult | Exception,
    ) -> None:
        """A batch is over (called as soon as the worker's answer is read): answer its
        requests, and give the worker its next batch in the same turn of the loop."""
        began = sent
        if isinstance(result, Exception):
            # A dead worker's batch is already back in the queue (`_on_worker_exit`
            # ran first): only a live worker's failure, such as an exception the model
            # raised, fails the batch.
            if self._forget(worker, batch):
                error = (
                    PayloadTooLarge(str(result)) if isinstance(result, BufferOverflow) else result
                )
                for pending in batch:
                    _fail(pending.future, error)
        else:
            self._forget(worker, batch)
            began = result.began
            self._metrics.compute.labels(self.name).observe(result.compute_s)
            self._metrics.decode.labels(self.name).observe(result.decode_s)
            per_request = (result.compute_s + result.decode_s) / len(batch)
            self.service_s = (
                per_request if self.service_s is None else 0.8 * self.service_s + 0.2 * per_request
            )
            for pending, outcome in zip(batch, result.outcomes, strict=True):
                if isinstance(outcome, Inferred):
                    if not pending.future.done():
                        pending.future.set_result(outcome)
                else:
                    _fail(pending.future, outcome)
        self._in_flight -= len(batch)
        self._busy_s += time.monotonic() - max(began, self._observed_at)
        self._reconcile()
        self._dispatch()

    def _forget(self, worker: WorkerHandle, batch: list[Pending]) -> bool:
        """Take an answered batch off its worker's list; False if it is not there (its worker
        died, and the batch went back to the queue)."""
        batches = self._running.get(worker, [])
        remaining = [b for b in batches if b is not batch]
        if len(remaining) == len(batches):
            return False
        if remaining:
            self._running[worker] = remaining
        else:
            del self._running[worker]
        return True

    def _retry(self, batch: list[Pending], error: WorkerError, crashed: bool) -> None:
        """Put a dead worker's batch back at the head of the queue, in its order.

        Only a crash counts against the requests: a worker that was asked to
        stop (and left with their batch) says nothing about them.
        """
        alone = len(batch) == 1
        again = []
        for pending in batch:
            if pending.future.done():
                continue
            if crashed:
                pending.deaths += 1
                if alone:
                    pending.deaths_alone += 1
            if pending.deaths_alone >= MAX_ATTEMPTS:
                _fail(pending.future, error)
            else:
                again.append(pending)
        self._queue.extendleft(reversed(again))
        self.retried += len(again)
        if again:
            self._drained.clear()

    def _fail_queued(self, error: Exception) -> None:
        """Fail what has not begun to run: the queue, and the batches held by busy workers."""
        while self._queue:
            _fail(self._queue.popleft().future, error)
        for batches in self._running.values():
            for batch in batches[1:]:
                for pending in batch:
                    _fail(pending.future, error)

    def _check_drained(self) -> None:
        if not self._queue and not self.count(WorkerState.BUSY):
            self._drained.set()

    # -- scaling -------------------------------------------------------------

    def set_desired(self, count: int, reason: str) -> None:
        """The autoscaler's decision: start or stop workers to match it."""
        count = max(self.settings.min_workers, min(self.settings.max_workers, count))
        if count != self.desired:
            self.scaling_events.append(ScalingEvent(time.time(), self.desired, count, reason))
            if count > self.desired:
                self.scale_ups += 1
            else:
                self.scale_downs += 1
        self.desired = count
        self._reconcile()

    def observe(self) -> Observation:
        """This pool's traffic since the last observation (called once a tick)."""
        now = time.monotonic()
        busy_s = self._busy_s + sum(
            now - max(w.busy_since, self._observed_at)
            for w in self._workers
            if w.state is WorkerState.BUSY
        )
        observation = Observation(
            t=now,
            arrivals=self._arrivals,
            busy_s=busy_s,
            in_flight=self._in_flight,
            queued=self.queue_depth,
        )
        self._arrivals, self._busy_s, self._observed_at = 0, 0.0, now
        return observation

    @property
    def live(self) -> int:
        """Workers starting or serving (not those on their way out)."""
        return self.count(WorkerState.STARTING, WorkerState.IDLE, WorkerState.BUSY)

    def _reconcile(self) -> None:
        """Start or stop workers until the live ones match `desired`."""
        if self._closing:
            return
        surplus = self.live - self.desired
        if surplus < 0:
            self._start_workers(-surplus)
        elif surplus > 0:
            idle = [w for w in self._workers if w.state is WorkerState.IDLE]
            for worker in sorted(idle, key=lambda w: w.idle_since)[:surplus]:
                log.info("model %r: stopping worker %s (scaling down)", self.name, worker.pid)
                self._track(worker.stop())

    def _cold_start(self) -> None:
        """Work for a model with no worker: start one now, not at the next tick."""
        if self._queue and not self.live and not self._closing:
            self.set_desired(max(self.desired, 1), "cold start: a request arrived")

    def _start_workers(self, count: int) -> None:
        if self._restart_timer is not None:
            return
        if self.last_start_error is not None:
            # The model failed to start: retry later, waiting longer each time.
            delay, self._backoff = self._backoff, min(self._backoff * 2, RESTART_BACKOFF[1])
            self._restart_timer = self._loop.call_later(delay, self._after_backoff)
            return
        for _ in range(count):
            self._track(self._start(self._new_worker()))

    def _after_backoff(self) -> None:
        self._restart_timer = None
        self.last_start_error = None
        self._reconcile()

    def _new_worker(self) -> WorkerHandle:
        """A handle counted as live (starting) at once, before its process exists.

        Counting it now, not when its start task first runs, is what keeps a
        second `_reconcile` in the same loop iteration from starting another.
        """
        own = self.cores.take(self.settings.start_threads)
        worker = WorkerHandle(
            self.spec, self._launcher, self._on_worker_exit, own, self.cores.cores
        )
        self._workers.append(worker)
        return worker

    def _remove(self, worker: WorkerHandle) -> None:
        """A worker is gone: forget it and give its cores back."""
        self._workers.remove(worker)
        self.cores.give_back(worker.cores)

    async def settled(self) -> None:
        """Return once as many workers are ready as are desired, or starting one has failed."""
        while not self._closing and self.last_start_error is None:
            if self.count(WorkerState.IDLE, WorkerState.BUSY) >= self.desired:
                return
            waiter = self._loop.create_future()
            self._settle_waiters.append(waiter)
            await waiter

    def _wake_settle_waiters(self) -> None:
        """A worker became ready, failed to start or left: settled() looks again."""
        for waiter in self._settle_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._settle_waiters.clear()

    async def _start(self, worker: WorkerHandle) -> None:
        try:
            await worker.start()
        except WorkerStartError as exc:
            self._start_failed(worker, exc)
            raise
        except BaseException:
            worker.kill()
            if worker.pid is None:  # no process was made, so no exit will remove it
                self._remove(worker)
            raise
        finally:
            self._wake_settle_waiters()
        self.last_start_error = None
        self._backoff = RESTART_BACKOFF[0]
        self.started += 1
        self._metrics.startup.labels(self.name).observe(worker.startup_s or 0.0)
        log.info(
            "model %r: worker %s ready in %.2f s", self.name, worker.pid, worker.startup_s or 0
        )
        self._dispatch()

    def _start_failed(self, worker: WorkerHandle, error: WorkerStartError) -> None:
        log.error("%s", error)
        self.last_start_error = error
        # The failed worker itself may still count as starting: its error message
        # arrives before its exit is seen.
        if not self.live - (worker.state is WorkerState.STARTING):
            # Nothing else could serve the waiting requests: tell them why now.
            self._fail_queued(Unavailable(f"{error.message}; fix the model and retry"))

    def _on_worker_exit(self, worker: WorkerHandle) -> None:
        """A worker is gone (its sentinel fired and its socket ended, in either order)."""
        self._remove(worker)
        self._wake_settle_waiters()
        lost = self._running.pop(worker, [])
        error = WorkerError(
            f"model {self.name!r}: worker process died (exit code {worker.exitcode}) "
            "while running this request"
        )
        if self._closing:
            for batch in lost:
                for pending in batch:
                    _fail(pending.future, error)
            self._check_drained()
            return
        if worker.crashed and worker.startup_s is not None:
            self.restarts += 1
            log.warning(
                "model %r: worker %s died (exit code %s)%s",
                self.name,
                worker.pid,
                worker.exitcode,
                f"; {sum(map(len, lost))} requests go back to the head of the queue"
                if lost
                else "",
            )
        # The first batch was running; those behind it never ran, so their requests are not
        # suspects. All go back to the head of the queue, in their order.
        for position, batch in reversed(list(enumerate(lost))):
            self._retry(batch, error, worker.crashed and position == 0)
        self._reconcile()
        self._dispatch()

    def _track(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, WorkerStartError):
                log.error("model %r: background task failed", self.name, exc_info=exc)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
