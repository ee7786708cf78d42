"""Measuring plan candidates through the real pool, and finding a model's serving plan.

::

    find_plan(model, config, variant, launcher)
      cached <entry>/plan.json for this key? ──yes──► Plan
        │ no
        ▼ for each PlanCandidate of plan.grid(...):
      ModelPool(candidate's settings, its own CoreAllocator, the service's launcher)
        start N workers ──► lone: one request at a time (median ms)
                        ──► saturation: N x batch x 2 requests always in flight (req/s),
                            once per batch size and queue delay (the same pool)
        close
      plan.choose(measurements) ──► Plan ──► <entry>/plan.json

The requests are synthetic but real: a JPEG of noise at the model's input size (decoded in
the workers, as a client's would be), a short text, or zero tensors of the example's shapes.
Everything torch does happens in the workers: the process that measures (the server, or
`autodep optimize`) never runs a torch op (GNU OpenMP's fork hazard). The HTTP layer is left
out. On a shared machine the figures move between runs; the median lone time shrugs off
interruptions, the saturated rate does not.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from autodep.codecs import codec_for
from autodep.codecs.base import Payload
from autodep.config import ModelConfig, ServerConfig
from autodep.optimize import plan as plans
from autodep.optimize.candidates import AS_GIVEN, imported
from autodep.optimize.resolve import Variant
from autodep.optimize.result import Row
from autodep.optimize.search import DEFAULT_CANDIDATES
from autodep.pool.cores import CoreAllocator, host_cores
from autodep.pool.items import Item
from autodep.pool.launcher import Launcher
from autodep.pool.pool import ModelPool
from autodep.worker.spec import WorkerSpec

log = logging.getLogger(__name__)

CONTENDERS = 2  # variants whose plans are measured: the search's choice and the runner-up
MIN_LONE = 5  # lone requests measured, at least


def measure_seconds(budget_s: float) -> float:
    """Time for each phase of one plan candidate: about 0.5% of the search budget, 0.2-2 s."""
    return min(2.0, max(0.2, budget_s / 200))


def contenders(variant: Variant, candidates: str = DEFAULT_CANDIDATES) -> list[Variant]:
    """The search's choice and the runner-up: the next fastest variant at the largest batch
    (it may serve better with more workers) among those that passed the gate and are at least
    as fast as the model as given at both batch sizes (the rule of `select.choose`)."""
    result, entry = variant.result, variant.entry
    if result is None or entry is None:
        return [variant]
    known = {c.name: c for c in imported(candidates)}
    base = result.row(AS_GIVEN)

    def eligible(row: Row) -> bool:
        if row.skipped is not None or row.name == variant.name or row.name not in known:
            return False
        if row.name == AS_GIVEN:
            return True
        pairs = ((row.img_s_1, base.img_s_1), (row.img_s_max, base.img_s_max))
        return all(
            mine is not None and theirs is not None and mine >= theirs for mine, theirs in pairs
        )

    others = sorted(filter(eligible, result.rows), key=lambda row: -(row.img_s_max or 0))
    runners_up = [
        Variant(row.name, result, entry, known[row.name], variant.from_cache) for row in others
    ]
    return [variant, *runners_up][:CONTENDERS]


def synthetic_item(model: ModelConfig) -> Item:
    """One request as a client would send it (see the module docstring)."""
    if model.input == "image":
        from PIL import Image

        height, width = model.preprocess.resize or (224, 224)
        noise = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noise).save(buffer, "JPEG")
        return Payload.of(buffer.getvalue(), "image/jpeg")
    if model.input == "text":
        return Payload.of("a synthetic request to measure the serving plan", "text/plain")
    return [np.zeros(shape, dtype) for shape, dtype in codec_for(model).decoder.example()]


async def measure(
    candidates: Sequence[plans.PlanCandidate],
    *,
    model: ModelConfig,
    config: ServerConfig,
    variant: Variant,
    launcher: Launcher,
    seconds: float,
) -> list[plans.Measurement]:
    """Plan candidates of one variant and worker count, served by one pool of their own and
    driven with synthetic requests: the lone phase once (a lone request neither waits for a
    batch to fill nor makes one), the saturated phase once per batch size and queue delay (the
    pool reads both at each dispatch)."""
    first = candidates[0]
    assert all((c.variant, c.workers) == (first.variant, first.workers) for c in candidates)
    largest = max(c.max_batch_size for c in candidates)
    cores = CoreAllocator(host_cores())
    settings = config.settings_for(model).model_copy(
        update={
            "min_workers": first.workers,
            "max_workers": first.workers,
            "threads": None,
            "max_queue": max(64, first.workers * largest * 4),
        }
    )
    example = codec_for(model).decoder.example()
    spec = WorkerSpec.of(
        model, first.threads, example, variant.spec(first.threads, len(cores.cores))
    )
    item = synthetic_item(model)
    pool = ModelPool(spec, settings, launcher, cores=cores)
    rates = []
    try:
        await pool.start(first.workers)
        owned = tuple(w.cores for w in pool.workers)
        lone: list[float] = []
        began = time.monotonic()
        while len(lone) < MIN_LONE or time.monotonic() - began < seconds:
            start = time.perf_counter()
            await pool.infer(item)
            lone.append(time.perf_counter() - start)
        for c in candidates:
            pool.settings = settings.model_copy(
                update={
                    "max_batch_size": c.max_batch_size,
                    "max_queue_delay": c.max_queue_delay_ms / 1000,
                }
            )
            rates.append(await _saturated(pool, item, _concurrency(c), seconds))
    finally:
        await pool.close()
    return [
        plans.Measurement(
            candidate=c,
            cores=owned,
            lone_ms=round(statistics.median(lone) * 1000, 3),
            saturated_rps=round(rate, 2),
            concurrency=_concurrency(c),
        )
        for c, rate in zip(candidates, rates, strict=True)
    ]


def _concurrency(candidate: plans.PlanCandidate) -> int:
    """Requests in flight at saturation: enough to fill every worker's batch twice over."""
    return candidate.workers * candidate.max_batch_size * 2


async def _saturated(pool: ModelPool, item: Item, concurrency: int, seconds: float) -> float:
    """Requests per second with `concurrency` clients, each sending its next request as soon
    as its last is answered; the first quarter of the time (new batch shapes) is not counted."""
    done = 0
    counting_from = time.monotonic() + seconds / 4
    until = counting_from + seconds

    async def client() -> None:
        nonlocal done
        while time.monotonic() < until:
            await pool.infer(item)
            if time.monotonic() >= counting_from:
                done += 1

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return done / max(1e-9, time.monotonic() - counting_from)


def variant_of(plan: plans.Plan, variant: Variant) -> Variant:
    """The variant the plan chose, among the contenders of the search's choice."""
    name = plan.chosen.candidate.variant
    return next((v for v in [variant, *contenders(variant)] if v.name == name), variant)


async def find_plan(
    model: ModelConfig,
    config: ServerConfig,
    variant: Variant,
    launcher: Launcher,
    progress: Callable[[int, int], None] | None = None,
) -> plans.Plan | None:
    """The model's plan: cached in the variant's cache entry, else measured now (and cached).
    None when there is no cache entry (the optimizer is off for the model). `progress(done,
    total)` hears of the plan candidates measured so far."""
    if variant.entry is None:
        return None
    mode, budget = config.optimize_for(model)
    variants = contenders(variant) if mode == "auto" else [variant]  # a named one stays
    seconds = measure_seconds(budget)
    max_batch = config.settings_for(model).max_batch_size
    cores = host_cores()
    key = plans.plan_key([v.name for v in variants], cores, max_batch, seconds)
    cached = plans.Plan.load(Path(variant.entry), key)
    if cached is not None:
        return cached
    started = time.monotonic()
    by_name = {v.name: v for v in variants}
    measurements: list[plans.Measurement] = []
    candidates = plans.grid(list(by_name), len(cores), max_batch)
    # One pool for the candidates of one variant and worker count.
    for (name, workers), group in itertools.groupby(
        candidates, key=lambda c: (c.variant, c.workers)
    ):
        log.info("model %r: measuring %s with %d worker(s)", model.name, name, workers)
        measurements += await measure(
            list(group),
            model=model,
            config=config,
            variant=by_name[name],
            launcher=launcher,
            seconds=seconds,
        )
        if progress is not None:
            progress(len(measurements), len(candidates))
    plan = plans.Plan(
        key, plans.choose(measurements), tuple(measurements), round(time.monotonic() - started, 2)
    )
    plan.save(Path(variant.entry))
    return plan
