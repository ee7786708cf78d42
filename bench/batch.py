"""`autodep batch` against the served rate and the in-process limit, and its cold start.

    in-process limit  this process runs the server's pipeline (autodep's decoder, the
                      TorchScript file as given, softmax, top-5) at batch sizes 1..16;
                      the best items/s (decode included) is the limit (bench.throughput)
    served            `python -m autodep.serve --optimize off` in a subprocess, a lean
                      closed-loop client (bench.loadgen) at concurrency 32
    batch             `python -m autodep.cli batch --optimize off` over a folder of N
                      distinct JPEGs, from a cold start (a new process): its items/s once
                      the workers are ready, its items/s over the whole run, and the time
                      from starting the process to the first result line

All three run the same variant (the file as given: `--optimize off`), with the
server's other defaults. Goals (issue 21): batch >= 0.9 of the in-process limit,
and faster than the served rate.

    python -m bench.batch [--quick] [--items N] [--seconds S] [--reps R] [--resize PX]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    InProcess,
    Param,
    make_jpeg,
    make_resnet18,
    model_config,
    parse_args,
    print_header,
    print_table,
    write_repository,
)
from bench.loadgen import post_loop
from bench.server import ServerProcess
from bench.throughput import SERVER_FLAGS, in_process_limit

PARAMS = [
    Param("items", 2000, 64, "pictures the batch job runs over"),
    Param("seconds", 20, 3, "seconds of load at concurrency 32 for the served rate"),
    Param("reps", 6, 1, "repetitions per batch size in-process"),
    Param("resize", 224, 64, "the model's input side in pixels"),
]
GOAL_OF_LIMIT = 0.9
_SUMMARY = re.compile(r"\(([\d.]+) items/s once ready")


@dataclass(frozen=True)
class BatchRun:
    wall_s: float  # from starting the process to its exit
    first_result_s: float  # from starting the process to the first line of results.jsonl
    ready_per_s: float  # as the job reports it: items / seconds since its workers were ready
    items: int

    @property
    def overall_per_s(self) -> float:
        return self.items / self.wall_s


def write_pictures(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        (folder / f"{i:06d}.jpg").write_bytes(make_jpeg(seed=i))


def run_batch(repository: Path, pictures: Path, output: Path, count: int) -> BatchRun:
    command = [sys.executable, "-m", "autodep.cli", "batch", "--config", str(repository)]
    command += ["--input", str(pictures), "--output", str(output), "--no-progress"]
    results = output / "results.jsonl"
    began = time.monotonic()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODEP_")}  # as the server
    process = subprocess.Popen(
        [*command, *SERVER_FLAGS], env=env, stderr=subprocess.PIPE, text=True
    )
    first = None
    # The job's only sign of its first result is the line in its file: look every 10 ms.
    while process.poll() is None and first is None:
        if results.exists() and results.stat().st_size > 0:
            first = time.monotonic() - began
        time.sleep(0.01)
    _, stderr = process.communicate()
    wall = time.monotonic() - began
    if process.returncode != 0:
        raise SystemExit(f"autodep batch failed ({process.returncode}):\n{stderr}")
    lines = results.read_text().count("\n")
    if lines != count:
        raise SystemExit(f"autodep batch wrote {lines} results for {count} items:\n{stderr}")
    match = _SUMMARY.search(stderr)
    return BatchRun(
        wall, first if first is not None else wall, float(match[1]) if match else 0.0, count
    )


async def served_rate(repository: Path, jpeg: bytes, seconds: int, log: Path) -> float:
    with ServerProcess("served", ["--config", str(repository), *SERVER_FLAGS], log) as server:
        url = server.url()
        await post_loop(url, jpeg, 32, seconds=min(2, seconds))  # warm every batch size
        return (await post_loop(url, jpeg, 32, seconds=seconds)).ok_per_s


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__ or "", PARAMS, argv, argparse.ArgumentParser(description=__doc__))
    print_header(
        f"batch: autodep batch vs served and in-process, resnet18 at {args.resize}", args.mode
    )
    with tempfile.TemporaryDirectory(prefix="autodep-bench-batch-") as tmp:
        directory = Path(tmp)
        config = model_config(make_resnet18(directory), args.resize)
        repository = write_repository(config, directory)
        jpeg = make_jpeg()
        limit = in_process_limit(InProcess(config), jpeg, args.reps)
        served = asyncio.run(served_rate(repository, jpeg, args.seconds, directory / "served.log"))
        write_pictures(directory / "pictures", args.items)
        job = run_batch(repository, directory / "pictures", directory / "out", args.items)
    print_table(
        ["way", "items/s", "of in-process limit", "of served"],
        [
            [f"in-process, best batch ({limit.best_batch})", f"{limit.best_per_s:.1f}", "1.00", ""],
            ["served, HTTP c=32", f"{served:.1f}", f"{served / limit.best_per_s:.2f}", "1.00"],
            [
                "autodep batch, once ready",
                f"{job.ready_per_s:.1f}",
                f"{job.ready_per_s / limit.best_per_s:.2f}",
                f"{job.ready_per_s / served:.2f}",
            ],
            [
                "autodep batch, whole run",
                f"{job.overall_per_s:.1f}",
                f"{job.overall_per_s / limit.best_per_s:.2f}",
                f"{job.overall_per_s / served:.2f}",
            ],
        ],
    )
    print(
        f"cold start: first result {job.first_result_s:.2f} s after starting the process; "
        f"{job.items} items in {job.wall_s:.1f} s"
    )
    share = job.ready_per_s / limit.best_per_s
    print(
        f"goals: batch >= {GOAL_OF_LIMIT} of the in-process limit: "
        f"{'met' if share >= GOAL_OF_LIMIT else 'NOT met'} ({share:.2f}); faster than served: "
        f"{'met' if job.ready_per_s > served else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
