"""The server's own account of scaling: /status polled several times a second.

/metrics (autodep.loadtest.capture) counts workers by state; /status names them. Polled
every `interval` seconds it gives, per worker process (pid), when it was first
seen, first ready (idle or busy) and first had served a request, and the
autoscaler's decisions with their wall-clock time (`scaling[].at`, `time.time()`).

    StatusPoller ──GET /status every 0.25 s──► [Poll(t, wall, models)] ─► status.jsonl
    worker_lives(polls)          pid → WorkerLife(first seen, ready, first served, gone)
    scaling_events(polls)        every decision once, `at` moved onto the run clock
    reaction(polls, events, t)   from a burst at t to the first extra worker serving

A time read from polls is the first poll that showed the change: at most one
interval late, never early.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

LIVE = ("starting", "idle", "busy")  # states that hold a process able to serve (soon)
READY = ("idle", "busy")


@dataclass(frozen=True)
class Poll:
    t: float  # run clock (s) when the answer came; monotonic until `on_run_clock`
    wall: float  # time.time() at the same moment
    models: dict[str, Any]  # /status "models"

    def workers(self, model: str) -> list[dict[str, Any]]:
        return list(self.models.get(model, {}).get("workers", []))

    def live(self, model: str) -> int:
        return sum(w["state"] in LIVE for w in self.workers(model))


class StatusPoller:
    """GET url/status every `interval` seconds until `stop()`; failures are counted."""

    def __init__(self, url: str, interval: float = 0.25) -> None:
        self.url = url.rstrip("/") + "/status"
        self.interval = interval
        self.polls: list[Poll] = []
        self.failures = 0
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        self._stopped.set()

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=2.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            tick = time.monotonic()
            while not self._stopped.is_set():
                await self.poll(session)
                tick = max(tick + self.interval, time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), tick - time.monotonic())

    async def poll(self, session: aiohttp.ClientSession) -> Poll | None:
        try:
            async with session.get(self.url) as response:
                response.raise_for_status()
                body = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            self.failures += 1
            if self.failures == 1:
                log.warning("polling %s failed (%s); going on", self.url, error)
            return None
        poll = Poll(time.monotonic(), time.time(), body["models"])
        self.polls.append(poll)
        return poll


def on_run_clock(polls: Sequence[Poll], t0: float) -> list[Poll]:
    """Polls timed by `time.monotonic()` moved onto a run clock that starts at `t0`."""
    return [Poll(p.t - t0, p.wall, p.models) for p in polls]


def save(path: Path, polls: Sequence[Poll]) -> None:
    with path.open("w") as file:
        file.writelines(json.dumps(asdict(p)) + "\n" for p in polls)


def load(path: Path) -> list[Poll]:
    with path.open() as file:
        return [Poll(**json.loads(line)) for line in file if line.strip()]


# -- what the polls say ------------------------------------------------------------


@dataclass(frozen=True)
class WorkerLife:
    pid: int
    model: str
    seen: float  # first poll that listed it
    ready: float | None  # first poll that showed it idle or busy
    served: float | None  # first poll that showed served > 0
    gone: float | None  # first poll after the last one that listed it as live
    startup_s: float | None  # as the server measured it


def worker_lives(polls: Sequence[Poll]) -> list[WorkerLife]:
    """Every worker process the polls saw, in order of appearance."""
    lives: dict[tuple[str, int], dict[str, Any]] = {}
    for index, poll in enumerate(polls):
        for model, state in poll.models.items():
            for worker in state.get("workers", []):
                pid = worker.get("pid")
                if pid is None:
                    continue
                life = lives.setdefault(
                    (model, pid),
                    {"pid": pid, "model": model, "seen": poll.t, "ready": None, "served": None},
                )
                if life["ready"] is None and worker["state"] in READY:
                    life["ready"] = poll.t
                if life["served"] is None and worker.get("served", 0) > 0:
                    life["served"] = poll.t
                if worker["state"] in LIVE:
                    life["last"] = index
                life["startup_s"] = worker.get("startup_s")
    result = []
    for life in lives.values():
        last = life.pop("last", None)
        gone = polls[last + 1].t if last is not None and last + 1 < len(polls) else None
        result.append(WorkerLife(**life, gone=gone))
    return sorted(result, key=lambda w: w.seen)


@dataclass(frozen=True)
class ScalingEvent:
    t: float  # run clock
    model: str
    before: int
    after: int
    reason: str


def scaling_events(polls: Sequence[Poll]) -> list[ScalingEvent]:
    """Each decision once (/status keeps the last 20 per model, so poll often enough)."""
    if not polls:
        return []
    offset = statistics.median(p.wall - p.t for p in polls)  # wall clock - run clock
    seen: dict[tuple[str, float, int, int], ScalingEvent] = {}
    for poll in polls:
        for model, state in poll.models.items():
            for e in state.get("scaling", []):
                key = (model, e["at"], e["from"], e["to"])
                if key not in seen:
                    seen[key] = ScalingEvent(
                        e["at"] - offset, model, e["from"], e["to"], e["reason"]
                    )
    return sorted(seen.values(), key=lambda e: e.t)


def live_series(polls: Sequence[Poll], model: str) -> tuple[list[float], list[int], list[int]]:
    """Per poll: time, live workers and busy workers of one model."""
    times = [p.t for p in polls]
    live = [p.live(model) for p in polls]
    busy = [sum(w["state"] == "busy" for w in p.workers(model)) for p in polls]
    return times, live, busy


@dataclass(frozen=True)
class Reaction:
    """From a burst at `at` (run clock) to an extra worker; seconds after `at`, None: not seen."""

    at: float
    model: str
    live_before: int  # workers live at the last poll before the burst
    decision_s: float | None  # the first scale-up decision (/status scaling `at`, exact)
    seen_s: float | None  # the first poll listing a worker beyond those live before
    ready_s: float | None  # the first poll showing that worker idle or busy
    served_s: float | None  # the first poll showing served >= 1 (its first batch came back)
    startup_s: float | None  # that worker's launch-to-ready time, as the server measured it


def reaction(
    polls: Sequence[Poll],
    events: Sequence[ScalingEvent],
    at: float,
    model: str,
    until: float | None = None,
) -> Reaction:
    """How the pool of `model` answered a burst that began at `at` (and ended at `until`)."""
    before = [p for p in polls if p.t <= at]
    listed = before[-1].workers(model) if before else []
    existing = {w["pid"] for w in listed if w["state"] in LIVE}
    known = {w["pid"] for w in listed}  # including those on their way out
    end = float("inf") if until is None else until
    decision = next(
        (
            e.t - at
            for e in events
            if e.model == model and at <= e.t < end and e.after > max(e.before, len(existing))
        ),
        None,
    )
    extra = next(
        (
            w
            for w in worker_lives([p for p in polls if p.t > at])
            if w.model == model and w.pid not in known and w.seen < end
        ),
        None,
    )

    def after(t: float | None) -> float | None:
        return None if t is None else t - at

    return Reaction(
        at=at,
        model=model,
        live_before=len(existing),
        decision_s=decision,
        seen_s=after(extra.seen) if extra else None,
        ready_s=after(extra.ready) if extra else None,
        served_s=after(extra.served) if extra else None,
        startup_s=extra.startup_s if extra else None,
    )
