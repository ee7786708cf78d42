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

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
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
    cached = cache.lookup(Path(job.entry).parent, job.key)
    if cached is not None:
        return cached
    try:
        subprocess.run(_command(job), check=True, timeout=job.budget_s + STARTUP_ALLOWANCE_S)
    except subprocess.TimeoutExpired:
        raise _over_budget(job) from None
    except subprocess.CalledProcessError as exc:
        raise _failed(exc.returncode) from None
    return _collect(job)


async def run_async(job: Job, progress: Callable[[str, str], None] | None = None) -> Result:
    """`run` for the event loop (the background search): cancelling it kills the child.
    `progress("k/n", name)` hears of each candidate the child starts (its stderr lines, which
    are passed on to this process's stderr)."""
    cached = cache.lookup(Path(job.entry).parent, job.key)
    if cached is not None:
        return cached
    child = await asyncio.create_subprocess_exec(*_command(job), stderr=asyncio.subprocess.PIPE)
    assert child.stderr is not None
    try:
        async with asyncio.timeout(job.budget_s + STARTUP_ALLOWANCE_S):
            await _relay(child.stderr, progress or (lambda counted, name: None))
            code = await child.wait()
    except TimeoutError:
        raise _over_budget(job) from None
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    if code != 0:
        raise _failed(code)
    return _collect(job)


# What the child prints as it starts a candidate (autodep.optimize.trial.search).
_STARTING = re.compile(r"\[(\d+/\d+)\] (\S+) \.\.\.$")


async def _relay(stream: asyncio.StreamReader, progress: Callable[[str, str], None]) -> None:
    """Pass the child's stderr on, reading the candidates it starts from it (in chunks: the
    quantizers' progress bars redraw one line with carriage returns, never ending it)."""
    pending = ""
    while chunk := await stream.read(1 << 16):
        text = chunk.decode(errors="replace")
        sys.stderr.write(text)
        *lines, pending = re.split(r"[\r\n]", pending + text)
        for line in lines:
            if match := _STARTING.match(line):
                progress(match[1], match[2])
        pending = pending[-4096:]  # a line that long is not a progress line


def _command(job: Job) -> list[str]:
    """The child's command line, its job written where it looks."""
    entry = Path(job.entry)
    cache.make_entry(entry)
    job_path = entry / "job.json"
    job_path.write_text(json.dumps(asdict(job)))
    # Deprecation notices of TorchScript and its exporter, at import: noise here.
    trial = ["-W", "ignore::FutureWarning", "-m", "autodep.optimize.trial"]
    return [sys.executable, *trial, str(job_path)]


def _over_budget(job: Job) -> OptimizeError:
    return OptimizeError(f"the optimizer's search ran over its budget ({job.budget_s}s)")


def _failed(code: int) -> OptimizeError:
    return OptimizeError(f"the optimizer's search failed (exit status {code})")


def _collect(job: Job) -> Result:
    entry = Path(job.entry)
    result = cache.lookup(entry.parent, job.key)
    if result is None:
        raise OptimizeError(f"the optimizer's search wrote no result in {entry}")
    return result
