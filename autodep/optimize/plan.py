"""The serving plan: variant, workers, threads, cores, largest batch and queue delay, together.

Plan candidates are data (`PlanCandidate`), made by `grid` from the variant table and the host's
cores; `autodep.optimize.serving` measures each through the real pool (workers, shared memory,
batching) at a lone request and at saturation; `choose` is a pure function of those
measurements. The plan is cached next to the variant, in the optimizer's cache entry
(``<entry>/plan.json``), under a key of what it was measured for.

Explicit settings win over the plan (`apply`): `--max-workers`, `--max-batch-size`,
`--max-queue-delay-ms` and a model's `workers:` / `batching:` entries, told from defaults by
pydantic's `model_fields_set` (`ServerConfig.given`). Threads per worker follow from the
workers (the host's cores shared out), unless `--threads-per-worker` is given.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from autodep.config import PoolSettings

PLAN = "plan.json"
QUEUE_DELAYS_MS = (0.0, 2.0)  # a batch may wait this long to fill up under load
NOISE = 0.03  # scores this close to the best count as equal: the simpler plan wins


@dataclass(frozen=True)
class PlanCandidate:
    variant: str
    workers: int
    threads: int  # per worker: the cores each owns
    max_batch_size: int
    max_queue_delay_ms: float


@dataclass(frozen=True)
class Measurement:
    candidate: PlanCandidate
    cores: tuple[tuple[int, ...], ...]  # the cores each worker owned while measured
    lone_ms: float  # median time of one request with nothing else in flight
    saturated_rps: float  # requests per second with `concurrency` requests always in flight
    concurrency: int


@dataclass(frozen=True)
class Plan:
    key: dict[str, Any]  # what the plan was measured for (see `plan_key`)
    chosen: Measurement
    measurements: tuple[Measurement, ...]
    search_s: float

    def save(self, entry: Path) -> None:
        partial = entry / f"{PLAN}.partial"
        partial.write_text(json.dumps(asdict(self), indent=1))
        partial.replace(entry / PLAN)  # readers never see half a file

    @classmethod
    def load(cls, entry: Path, key: dict[str, Any]) -> Plan | None:
        """The plan cached in `entry` for this key, if there is one."""
        try:
            data = json.loads((entry / PLAN).read_text())
            if data["key"] != key:
                return None
            measurements = tuple(_measurement(m) for m in data["measurements"])
            return cls(key, _measurement(data["chosen"]), measurements, data["search_s"])
        except (OSError, ValueError, TypeError, KeyError):
            return None


def _measurement(data: dict[str, Any]) -> Measurement:
    return Measurement(
        candidate=PlanCandidate(**data["candidate"]),
        cores=tuple(tuple(c) for c in data["cores"]),
        lone_ms=data["lone_ms"],
        saturated_rps=data["saturated_rps"],
        concurrency=data["concurrency"],
    )


def plan_key(
    variants: Sequence[str], cores: Sequence[int], max_batch_size: int, seconds: float
) -> dict[str, Any]:
    return {
        "variants": list(variants),
        "cores": list(cores),
        "max_batch_size": max_batch_size,
        "seconds": seconds,
        "grid": {"queue_delays_ms": list(QUEUE_DELAYS_MS), "noise": NOISE},
    }


def grid(variants: Sequence[str], cores: int, max_batch_size: int) -> tuple[PlanCandidate, ...]:
    """Every variant with every way of sharing the cores out evenly (1 worker with all of
    them ... one worker per core), at the largest batch and at half of it, with and without a
    queue delay."""
    shares = [w for w in range(1, cores + 1) if cores % w == 0]
    batches = sorted({max(1, max_batch_size // 2), max_batch_size})
    return tuple(
        PlanCandidate(variant, workers, cores // workers, batch, delay)
        for variant in variants
        for workers in shares
        for batch in batches
        for delay in QUEUE_DELAYS_MS
    )


def choose(measurements: Sequence[Measurement]) -> Measurement:
    """The plan with the best geometric mean of its two speeds relative to the best measured:
    the lone request's (best lone time / its lone time) and the saturated rate's (its rate /
    the best rate), as `select.choose` weighs batch 1 against the largest batch. Scores within
    NOISE of the best count as a tie, which the simpler plan wins: fewer workers (less memory),
    then no queue delay (a batch that waits must earn it)."""
    if not measurements:
        raise ValueError("no plan was measured")
    best_lone = min(m.lone_ms for m in measurements)
    best_rate = max(m.saturated_rps for m in measurements)

    def score(m: Measurement) -> float:
        return math.sqrt((best_lone / m.lone_ms) * (m.saturated_rps / best_rate))

    best = max(score(m) for m in measurements)
    near = [m for m in measurements if score(m) >= best * (1 - NOISE)]
    return min(near, key=lambda m: (m.candidate.workers, m.candidate.max_queue_delay_ms, -score(m)))


def apply(plan: Plan | None, settings: PoolSettings, given: Collection[str]) -> PoolSettings:
    """The pool settings with the plan's values wherever no explicit setting was given."""
    if plan is None:
        return settings
    chosen = plan.chosen.candidate
    update: dict[str, Any] = {}
    if "max_workers" not in given:
        update["max_workers"] = chosen.workers
        update["min_workers"] = min(settings.min_workers, chosen.workers)
        update["autoscale"] = replace(
            settings.autoscale, max_workers=chosen.workers, min_workers=update["min_workers"]
        )
    if "max_batch_size" not in given:
        update["max_batch_size"] = chosen.max_batch_size
    if "max_queue_delay" not in given:
        update["max_queue_delay"] = chosen.max_queue_delay_ms / 1000
    return settings.model_copy(update=update)


def status(
    plan: Plan | None,
    settings: PoolSettings,
    given: Collection[str],
    cores: Sequence[Sequence[int]],
    lone_cores: Sequence[int],
    note: str | None = None,
) -> dict[str, Any]:
    """The plan as GET /status shows it: the settings in force, where they came from, and what
    was measured. `cores`: what each live worker owns now; `lone_cores`: where a lone batch
    runs (every core of the pool, unless the threads per worker were given)."""
    return {
        "variant": None if plan is None else plan.chosen.candidate.variant,
        "workers": settings.max_workers,
        "threads_per_worker": settings.start_threads,
        "cores": [list(c) for c in cores],
        "lone_request_cores": list(lone_cores),
        "max_batch_size": settings.max_batch_size,
        "max_queue_delay_ms": round(settings.max_queue_delay * 1000, 3),
        "source": "defaults" if plan is None else "measured",
        "given": sorted(given),
        **({"note": note} if note else {}),
        "search_s": None if plan is None else plan.search_s,
        "measurements": [] if plan is None else [_row(m, plan.chosen) for m in plan.measurements],
    }


def _row(m: Measurement, chosen: Measurement) -> dict[str, Any]:
    return {
        **asdict(m.candidate),
        "cores": [list(c) for c in m.cores],
        "lone_ms": m.lone_ms,
        "saturated_rps": m.saturated_rps,
        "concurrency": m.concurrency,
        "chosen": m == chosen,
    }


def table(plan: Plan) -> str:
    """The measured plans as a Markdown table, as `autodep optimize` prints it."""
    header = ("variant", "workers", "threads", "cores", "batch", "delay ms", "lone ms", "req/s")
    lines = [header, ("---",) * len(header)]
    for m in plan.measurements:
        c = m.candidate
        lines.append(
            (
                c.variant + (" (chosen)" if m == plan.chosen else ""),
                str(c.workers),
                str(c.threads),
                " ".join(",".join(map(str, cores)) for cores in m.cores),
                str(c.max_batch_size),
                f"{c.max_queue_delay_ms:g}",
                f"{m.lone_ms:.2f}",
                f"{m.saturated_rps:.1f} (c={m.concurrency})",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |"
        for line in lines
    )
