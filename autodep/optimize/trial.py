"""The search child: each candidate prepared, gated and measured (see `search`).

``python -m autodep.optimize.trial JOB.json``, started by `autodep.optimize.search.run`; it
runs with the torch threads the workers start with.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from autodep.codecs import codec_for
from autodep.config import ModelConfig
from autodep.optimize import cache, gate, measure
from autodep.optimize.candidates import AS_GIVEN, Candidate, Target, applies, imported
from autodep.optimize.cpu import this_machine
from autodep.optimize.result import Result, Row
from autodep.optimize.samples import Calibration, Sample, calibration_for, samples
from autodep.optimize.search import Job, import_candidates
from autodep.optimize.select import choose
from autodep.optimize.source import Source
from autodep.worker.loading import LoadContext
from autodep.worker.runners import Runner, make_runner

Answers = list[list[np.ndarray]]


class Trial:
    """One model's search: the reference answers, then one `row` per candidate."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.model = ModelConfig.model_validate_json(job.model)
        example = codec_for(self.model).decoder.example()
        self.target = Target(
            str(self.model.path), self.model.input, self.model.output, example, this_machine()
        )
        self.entry = Path(job.entry)
        self.samples: list[Sample] = samples(self.model)
        self.source = Source(self.model.path, example, self.entry, lambda: self.calibration.inputs)
        self.context = LoadContext(job.threads, self.entry)
        self.request = [t[0] for t in self.source.inputs(1)] if example else []
        self.batch_sizes = sorted({1, job.max_batch_size})
        self.reference: Answers = []
        self.deadline = time.monotonic() + job.budget_s

    @functools.cached_property
    def calibration(self) -> Calibration:
        """The calibration inputs and the gate samples held out from them (made once, when a
        calibrated candidate first needs them)."""
        return calibration_for(self.model, len(self.samples))

    def row(self, candidate: Candidate) -> Row:
        row = Row(candidate.name, skipped=applies(candidate, self.target))
        if row.skipped is None and candidate.name != AS_GIVEN and time.monotonic() > self.deadline:
            row = replace(row, skipped=f"over the search budget ({self.job.budget_s:.0f}s)")
        if row.skipped is not None:
            return row
        try:
            return self._run(candidate)
        except Exception as exc:  # any failure to convert or to run skips the candidate
            traceback.print_exc(file=sys.stderr)
            message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            return replace(row, skipped=f"failed: {type(exc).__name__}: {message}")

    def _run(self, candidate: Candidate) -> Row:
        out = self.entry / candidate.name
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        started = time.monotonic()
        artifact = imported(candidate.prepare)(self.source, candidate.options, out)
        model = imported(candidate.load)(artifact, candidate.options, self.context)
        runner = make_runner(model, self.model.input, self.model.output)
        answers = self._answers(runner)
        prepare_s = time.monotonic() - started  # with the first load and calls (compilation)
        if candidate.name == AS_GIVEN:
            self.reference = answers
        # A calibrated candidate only on the samples its calibration did not see.
        judged = self.calibration.held_out if candidate.calibrated else range(len(answers))
        verdict = gate.judge(
            self.model.output,
            [self.reference[i] for i in judged],
            [answers[i] for i in judged],
            self.model.optimize.tolerance,
        )
        row = Row(
            candidate.name,
            note=self.calibration.note() if candidate.calibrated else None,
            prepare_s=round(prepare_s, 3),
            agreement=round(verdict.agreement, 5),
            max_diff=None if verdict.max_diff is None else float(f"{verdict.max_diff:.3g}"),
            skipped=verdict.reason(self.model.optimize.tolerance),
            artifact=str(Path(artifact).relative_to(self.entry))
            if Path(artifact).is_relative_to(self.entry)
            else str(artifact),
        )
        if row.skipped is not None or not self.request:
            return row
        speeds = {
            batch: measure.throughput(runner, self.request, batch, self.job.measure_s)
            for batch in self.batch_sizes
        }
        return replace(
            row,
            img_s_1=round(speeds[1], 2),
            img_s_max=round(speeds[self.job.max_batch_size], 2),
        )

    def _answers(self, runner: Runner) -> Answers:
        """The runner's outputs for every sample, in batches of up to max_batch_size."""
        size = self.job.max_batch_size
        answers: Answers = []
        for i in range(0, len(self.samples), size):
            batch = [[torch.from_numpy(t) for t in s] for s in self.samples[i : i + size]]
            answers += [[t.numpy() for t in outputs] for outputs in runner(batch)]
        return answers


def search(job: Job) -> Result:
    """Run the job's search and store its result in the cache entry."""
    started = time.monotonic()
    torch.set_num_threads(job.threads)
    trial = Trial(job)
    candidates = sorted(
        import_candidates(job.candidates, job.only, job.int8), key=lambda c: c.name != AS_GIVEN
    )
    rows: list[Row] = []
    with torch.inference_mode():
        for number, candidate in enumerate(candidates, 1):
            print(f"[{number}/{len(candidates)}] {candidate.name} ...", file=sys.stderr, flush=True)
            row = trial.row(candidate)
            if candidate.name == AS_GIVEN and row.skipped is not None:
                raise RuntimeError(f"the model as given does not run: {row.skipped}")
            done = f"skipped: {row.skipped}" if row.skipped else f"{row.img_s_max} img/s"
            print(
                f"[{number}/{len(candidates)}] {candidate.name}: {done}",
                file=sys.stderr,
                flush=True,
            )
            rows.append(row)
    chosen = choose(rows, AS_GIVEN) if job.only is None else job.only
    result = Result(
        key=job.key,
        chosen=chosen,
        rows=tuple(rows),
        max_batch_size=job.max_batch_size,
        threads=job.threads,
        machine=trial.target.machine.describe(),
        search_s=round(time.monotonic() - started, 2),
    )
    result.save(trial.entry / cache.RESULT)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    # The exporters' and TorchScript's deprecation notices are noise here; failures are rows.
    warnings.simplefilter("ignore")
    # The libraries' chatter (NNCF's progress bars and log, the quantizers' notices) joins the
    # progress lines on stderr: the parent's stdout is for its table.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    (job_path,) = sys.argv[1:] if argv is None else argv
    search(Job(**json.loads(Path(job_path).read_text())))


if __name__ == "__main__":
    main()
