"""Which variant of each model the workers load: resolved before the model's pool starts.

`off` serves the file as given; `auto` takes the cached search result, or searches first
(within the model's budget); a candidate's name serves that candidate if it prepares and
passes the accuracy gate, and refuses to start otherwise. When `auto` cannot search (no
input shape to measure, or the search itself failed), the model is served as given and its
status says why. Blocking (file hashing, maybe a search in a child process): the service runs
it in an executor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autodep.codecs import codec_for
from autodep.config import ModelConfig, ServerConfig
from autodep.errors import OptimizeError
from autodep.optimize import cache
from autodep.optimize.candidates import AS_GIVEN, Candidate
from autodep.optimize.result import Result
from autodep.optimize.search import DEFAULT_CANDIDATES, Job, import_candidates, job_for, run
from autodep.worker.spec import VariantSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    name: str
    result: Result | None = None  # None: not optimized (mode off, or no search possible)
    entry: Path | None = None  # the cache entry of the result
    candidate: Candidate | None = None
    from_cache: bool = False
    note: str | None = None  # why the model is served as given without a search

    def spec(self, threads: int, pool_threads: int = 0) -> VariantSpec | None:
        """What a worker loads; None for the file as given. A runtime that fixes its threads at
        load also loads a form with `pool_threads`, for lone batches."""
        candidate = self.candidate
        if self.name == AS_GIVEN or self.result is None or self.entry is None or not candidate:
            return None
        artifact = self.result.row(self.name).artifact
        assert artifact is not None  # a chosen candidate passed the gate, so it has one
        return VariantSpec(
            name=self.name,
            load=candidate.load,
            artifact=str(self.entry / artifact),
            options=tuple(sorted(candidate.options.items())),
            threads=threads,
            cache_dir=str(self.entry),
            wide_threads=pool_threads if candidate.fixes_threads else 0,
        )

    def status(self) -> dict[str, Any]:
        """The variant and its table, as GET /status shows them."""
        rows = self.result.rows if self.result is not None else ()
        return {
            "name": self.name,
            "from_cache": self.from_cache,
            **({"note": self.note} if self.note else {}),
            "candidates": [
                {
                    "name": row.name,
                    "img_s": row.img_s_max,
                    "img_s_1": row.img_s_1,
                    "ms_1": None if row.ms_1 is None else round(row.ms_1, 3),
                    "prepare_s": row.prepare_s,
                    "agreement": row.agreement,
                    "max_diff": row.max_diff,
                    "skipped": row.skipped,
                    "note": row.note,
                }
                for row in rows
            ],
        }


def resolve(
    model: ModelConfig, config: ServerConfig, candidates: str = DEFAULT_CANDIDATES
) -> Variant:
    mode, _ = config.optimize_for(model)
    if mode == "off":
        return Variant(AS_GIVEN)
    if not codec_for(model).decoder.example():
        note = "not optimized: the input shape is unknown (set input_shape for a tensor model)"
        if mode != "auto":
            raise OptimizeError(f"model {model.name!r}: optimize {mode}: {note}")
        return Variant(AS_GIVEN, note=note)

    def job(only: str | None) -> Job:
        return _job(model, config, candidates, only)

    full = job(None)
    cached = cache.lookup(Path(full.entry).parent, full.key)
    if mode == "auto":
        try:
            result = cached or run(full)
        except OptimizeError as exc:
            log.warning("model %r: served as given: %s", model.name, exc.message)
            return Variant(AS_GIVEN, note=f"not optimized: {exc.message}")
        return _variant(model, mode, full, result, from_cache=cached is not None)
    # A named candidate: from the full search's cache if it passed there, else searched alone.
    if cached is not None and cached.row(mode).skipped is None:
        return _variant(model, mode, full, cached, from_cache=True, name=mode)
    alone = job(mode)
    cached = cache.lookup(Path(alone.entry).parent, alone.key)
    return _variant(model, mode, alone, cached or run(alone), from_cache=cached is not None)


def pending_search(
    model: ModelConfig, config: ServerConfig, candidates: str = DEFAULT_CANDIDATES
) -> Job | None:
    """The search `resolve` would run first for `model` in mode auto; None when it would not
    search (another mode, an unknown input shape, or a result in the cache)."""
    mode, _ = config.optimize_for(model)
    if mode != "auto" or not codec_for(model).decoder.example():
        return None
    full = _job(model, config, candidates, None)
    return None if cache.lookup(Path(full.entry).parent, full.key) else full


def _job(model: ModelConfig, config: ServerConfig, candidates: str, only: str | None) -> Job:
    settings = config.settings_for(model)
    return job_for(
        model,
        threads=settings.start_threads,
        max_batch_size=settings.max_batch_size,
        budget_s=config.optimize_for(model)[1],
        root=cache.root(config.cache_dir),
        candidates=candidates,
        only=only,
        int8=config.int8_for(model),
    )


def _variant(
    model: ModelConfig,
    mode: str,
    job: Job,
    result: Result,
    from_cache: bool,
    name: str | None = None,
) -> Variant:
    row = result.row(name or result.chosen)
    if row.skipped is not None:
        raise OptimizeError(f"model {model.name!r}: optimize {mode}: {row.skipped}")
    candidate = next(c for c in import_candidates(job.candidates) if c.name == row.name)
    return Variant(row.name, result, Path(job.entry), candidate, from_cache)


def resolve_all(config: ServerConfig) -> dict[str, Variant]:
    """Every served model's variant, one after the other."""
    return {model.name: resolve(model, config) for model in config.models}
