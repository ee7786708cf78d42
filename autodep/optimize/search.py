"""The search: every candidate prepared, gated and measured, in a child process.

::

    parent (server or `autodep optimize`)        child: python -m autodep.optimize.trial JOB
      key = cache.key(...) ──hit──► Result          for each candidate (progress on stderr):
        │ miss                                        applies? ─no─► skipped: why
        └─ job.json ──► child ───────────────────►    prepare (timed) ─► load ─► runner
                         │                            gate vs as-given ─fail─► skipped: why
      Result ◄── <cache>/<key>/result.json ◄──────    measure at batch 1 and max_batch_size
                                                     select.choose(rows) ─► result.json

The child (`autodep.optimize.trial`) is a fresh interpreter: the server and the forkserver
never run a torch op (GNU OpenMP's fork hazard), and a candidate that crashes takes only the
child down.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from autodep.codecs import codec_for
from autodep.config import ModelConfig
from autodep.errors import OptimizeError
from autodep.optimize import cache
from autodep.optimize.candidates import AS_GIVEN, Candidate, imported, without_int8
from autodep.optimize.cpu import Machine, this_machine
from autodep.optimize.result import Result

DEFAULT_CANDIDATES = "autodep.optimize.candidates:CANDIDATES"
STARTUP_ALLOWANCE_S = 60.0  # the child's imports, and the candidate running when time is up


@dataclass(frozen=True)
class Job:
    """What the child is asked to do (written as JSON; the model config as its own JSON)."""

    model: str  # ModelConfig JSON
    candidates: str  # "module:attribute" of a sequence of Candidate
    only: str | None  # a candidate's name: that one and the model as given
    threads: int
    max_batch_size: int
    budget_s: float
    entry: str  # the cache entry directory
    key: str
    int8: bool = True  # False: the int8 candidates are left out

    @property
    def measure_s(self) -> float:
        """Time to measure one candidate at one batch size: about 0.5% of the budget."""
        return min(1.0, max(0.1, self.budget_s / 200))


def import_candidates(
    reference: str, only: str | None = None, int8: bool = True
) -> tuple[Candidate, ...]:
    candidates: Sequence[Candidate] = imported(reference)
    if not any(c.name == AS_GIVEN for c in candidates):
        raise ValueError(f"{reference} lacks the {AS_GIVEN!r} candidate (the gate's reference)")
    if not int8 and only is None:  # a candidate named on its own is searched even so
        candidates = without_int8(candidates)
    return tuple(c for c in candidates if only is None or c.name in (AS_GIVEN, only))


def job_for(
    model: ModelConfig,
    *,
    threads: int,
    max_batch_size: int,
    budget_s: float,
    root: Path,
    candidates: str = DEFAULT_CANDIDATES,
    only: str | None = None,
    machine: Machine | None = None,
    int8: bool = True,
) -> Job:
    """The job of one model's search, with its cache key (reads the model file, no torch)."""
    example = codec_for(model).decoder.example()
    entry_key = cache.key(
        model_digest=cache.file_digest(model.path),
        machine=machine or this_machine(),
        example=example,
        candidates=import_candidates(candidates, only, int8),
        settings={
            "input": model.input,
            "output": model.output,
            "preprocess": model.preprocess.model_dump(mode="json"),
            "tolerance": model.optimize.tolerance,
            "samples": cache.directory_digest(model.optimize.samples),
            "threads": threads,
            "max_batch_size": max_batch_size,
        },
    )
    return Job(
        model=model.model_dump_json(),
        candidates=candidates,
        only=only,
        threads=threads,
        max_batch_size=max_batch_size,
        budget_s=budget_s,
        entry=str(root / entry_key),
        key=entry_key,
        int8=int8,
    )


def run(job: Job) -> Result:
    """The job's result: from the cache, else from a search in a child process."""
    entry = Path(job.entry)
    cached = cache.lookup(entry.parent, job.key)
    if cached is not None:
        return cached
    cache.make_entry(entry)
    job_path = entry / "job.json"
    job_path.write_text(json.dumps(asdict(job)))
    try:
        subprocess.run(
            # Deprecation notices of TorchScript and its exporter, at import: noise here.
            [
                sys.executable,
                "-W",
                "ignore::FutureWarning",
                "-m",
                "autodep.optimize.trial",
                str(job_path),
            ],
            check=True,
            timeout=job.budget_s + STARTUP_ALLOWANCE_S,
        )
    except subprocess.TimeoutExpired:
        raise OptimizeError(
            f"the optimizer's search ran over its budget ({job.budget_s}s)"
        ) from None
    except subprocess.CalledProcessError as exc:
        raise OptimizeError(
            f"the optimizer's search failed (exit status {exc.returncode})"
        ) from None
    result = cache.lookup(entry.parent, job.key)
    if result is None:
        raise OptimizeError(f"the optimizer's search wrote no result in {entry}")
    return result
