"""How GNU OpenMP's waiting policy changes a model call, on a quiet and on a busy machine.

libgomp reads its policy once, when torch loads it, so autodep must choose it
for its workers before the forkserver imports torch (autodep.pool.launcher).
The choice is between spinning at every barrier (fast when the cores are ours,
ruinous when a descheduled sibling holds one), blocking at once (PASSIVE:
every barrier pays a futex wake-up), or spinning for a bounded count, then
blocking (GOMP_SPINCOUNT).

Each policy runs in a fresh interpreter (libgomp takes the environment only at
load): a TorchScript resnet18, batch 1, torch threads = the cores, p50 over
`--seconds`. Conditions:

    quiet       nothing else runs (on a shared machine: as quiet as it gets)
    contended   a second process runs the same model, one thread, nonstop:
                what a second worker or a neighbour's job does to the first

The figure per policy is its p50 over the best policy's p50 in the same
condition; the default is the policy whose worse ratio is smallest.

    python -m bench.omp [--quick] [--seconds S] [--rounds R]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import Param, make_resnet18, median, parse_args, print_header, print_table

PARAMS = [
    Param("seconds", 6, 2, "seconds of calls per policy, condition and round"),
    Param("rounds", 3, 1, "rounds; each runs every policy in both conditions"),
]
# (name, environment) as a user would set them; "default" is libgomp untouched.
POLICIES: list[tuple[str, dict[str, str]]] = [
    ("default (spin)", {}),
    ("OMP_WAIT_POLICY=PASSIVE", {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("GOMP_SPINCOUNT=1000", {"GOMP_SPINCOUNT": "1000"}),
    ("GOMP_SPINCOUNT=10000", {"GOMP_SPINCOUNT": "10000"}),
    ("GOMP_SPINCOUNT=100000", {"GOMP_SPINCOUNT": "100000"}),
]
OMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

# Run by the child interpreters: time `seconds` of resnet18 calls, print the p50 in ms.
CALLS = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[3]))
model = torch.jit.load(sys.argv[1]).eval()
x = torch.randn(1, 3, 224, 224)
with torch.inference_mode():
    for _ in range(5):
        model(x)
    samples, stop = [], time.monotonic() + float(sys.argv[2])
    while time.monotonic() < stop or len(samples) < 5:
        began = time.perf_counter()
        model(x)
        samples.append(time.perf_counter() - began)
samples.sort()
print(samples[len(samples) // 2] * 1e3)
"""
# The contender: the same model on one thread until killed.
CONTENDER = """
import sys, torch
torch.set_num_threads(1)
model = torch.jit.load(sys.argv[1]).eval()
x = torch.randn(1, 3, 224, 224)
with torch.inference_mode():
    while True:
        model(x)
"""


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARIABLES}
    return {**env, **extra, "PYTHONWARNINGS": "ignore"}


def p50_ms(model: Path, env: dict[str, str], seconds: int) -> float:
    threads = str(len(os.sched_getaffinity(0)))
    out = subprocess.run(
        [sys.executable, "-c", CALLS, str(model), str(seconds), threads],
        env=clean_env(env),
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def measure(model: Path, seconds: int, contended: bool) -> dict[str, float]:
    contender = None
    if contended:
        contender = subprocess.Popen(
            [sys.executable, "-c", CONTENDER, str(model)], env=clean_env({})
        )
    try:
        return {name: p50_ms(model, env, seconds) for name, env in POLICIES}
    finally:
        if contender is not None:
            contender.kill()
            contender.wait()


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], PARAMS)
    print_header("OpenMP waiting: resnet18 batch 1, quiet vs contended", args.mode)
    results: dict[str, dict[str, list[float]]] = {"quiet": {}, "contended": {}}
    with tempfile.TemporaryDirectory(prefix="autodep-bench-") as tmp:
        model = make_resnet18(Path(tmp))
        for round_no in range(args.rounds):
            for condition in results:
                for name, value in measure(model, args.seconds, condition == "contended").items():
                    results[condition].setdefault(name, []).append(value)
            print(f"  round {round_no + 1} of {args.rounds} done")
    p50 = {c: {name: median(v) for name, v in r.items()} for c, r in results.items()}
    best = {c: min(values.values()) for c, values in p50.items()}
    worst_ratio = {name: max(p50[c][name] / best[c] for c in p50) for name, _ in POLICIES}
    rows = [
        [
            name,
            f"{p50['quiet'][name]:.1f}",
            f"{p50['quiet'][name] / best['quiet']:.2f}x",
            f"{p50['contended'][name]:.1f}",
            f"{p50['contended'][name] / best['contended']:.2f}x",
            f"{worst_ratio[name]:.2f}x",
        ]
        for name, _ in POLICIES
    ]
    print(f"p50 ms, medians of {args.rounds} rounds; ratio = p50 / best p50 in that condition")
    print_table(["policy", "quiet p50", "vs best", "contended p50", "vs best", "worse ratio"], rows)
    choice = min(worst_ratio, key=worst_ratio.__getitem__)
    print(f"best in both conditions (smallest worse ratio): {choice}")


if __name__ == "__main__":
    main()
