"""Report section on autoscaling: `python -m research.experiments`, its headline numbers."""

from __future__ import annotations

import statistics
import subprocess
import sys
from typing import Any

from autodep.loadtest.report import table
from research import plots
from research.paper_base import Context, Goal, Part

# -- autoscaling ---------------------------------------------------------------------

EXPERIMENTS = "experiments"
FIGURES = (
    "exp1_spike.png",
    "exp1_diurnal.png",
    "exp2_reaction.png",
    "exp3_cold.png",
    "exp4_two_models.png",
)


def measure_autoscaling(ctx: Context) -> dict[str, Any]:
    """`python -m research.experiments` into DIR/experiments; the headline numbers of its data."""
    from research import experiment_data

    directory = ctx.out / EXPERIMENTS
    command = [sys.executable, "-m", "research.experiments", "--out", str(directory)]
    subprocess.run([*command, *(["--quick"] if ctx.quick else [])], check=True)
    found = experiment_data.load(directory)
    pools = {
        kind: {
            config: {
                "slo": run.summary["slo_attainment"],
                "worker_s": run.summary["worker_seconds"],
                "p50_ms": (run.summary["latency_ms"] or {}).get("p50"),
                "p99_ms": (run.summary["latency_ms"] or {}).get("p99"),
                "failed": run.summary["failed"],
            }
            for config, run in runs.items()
        }
        for kind, runs in found.pools.items()
    }
    served = [r.reaction.served_s for r in found.reactions if r.reaction.served_s is not None]
    cold = found.facts.cold
    return {
        "slo_ms": found.slo_ms,
        "pools": pools,
        "reaction_served_s": served,
        "cold_ms": [c.cold_ms for c in cold],
        "warm_ms": [statistics.median(c.warm_ms) for c in cold],
        "runtime_s": found.facts.runtime_s,
        "mode": found.facts.mode,
    }


def render_autoscaling(ctx: Context, results: dict[str, Any]) -> Part:
    pools, slo = results["pools"], results["slo_ms"]
    rows = [
        [
            kind,
            config,
            f"{r['slo'] * 100:.1f} %",
            f"{r['worker_s']:.1f}",
            f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f}" if r["p50_ms"] is not None else "—",
            str(r["failed"]),
        ]
        for kind, configs in pools.items()
        for config, r in configs.items()
    ]
    kinds = list(pools)
    configs = sorted({c for configs in pools.values() for c in configs})
    figure = plots.bars(
        ctx.figure("autoscaling.png"),
        f"SLO attainment (share answered within {slo:g} ms)",
        "%",
        kinds,
        {c: [pools[k].get(c, {}).get("slo", 0) * 100 for k in kinds] for c in configs},
    )
    lines = [
        f"`python -m research.experiments` ({results['mode']}, {results['runtime_s'] / 60:.1f} "
        "min): an open-loop load generator replays seeded schedules against real servers, "
        "the autoscaler (min 0, max 2 workers) against fixed pools of 1 and 2; the SLO is "
        "10 x the single-request latency calibrated in the same run. Its own report, with "
        f"every figure: [{EXPERIMENTS}/experiments.md]({EXPERIMENTS}/experiments.md).",
        "",
        *table(["schedule", "pool", "SLO", "worker-s", "p50 / p99 ms", "failed"], rows),
        "",
        f"![autoscaling]({figure.name})",
        "",
        *(f"![{name}]({EXPERIMENTS}/{name})\n" for name in FIGURES if _exists(ctx, name)),
    ]
    served = results["reaction_served_s"]
    if served:
        lines += [
            "",
            f"Burst reaction (burst start to an extra worker serving), median of "
            f"{len(served)}: {statistics.median(served):.2f} s.",
        ]
    if results["cold_ms"]:
        cold, warm = statistics.median(results["cold_ms"]), statistics.median(results["warm_ms"])
        lines += ["", f"Cold start from zero workers: {cold:.0f} ms against {warm:.0f} ms warm."]
    why = (
        "The autoscaler starts each run from zero workers: the first requests wait for a "
        f"cold start ({_median(results['cold_ms'])} against {_median(results['warm_ms'])} "
        "warm here), and a burst gets its second worker only after the reaction time "
        f"({_median(served, 's')}); the requests of those seconds queue behind one worker "
        "or none. The shorter the schedule (10 s with --quick), the larger their share."
    )
    goals = []
    for kind, configs in pools.items():
        if {"autoscaler", "fixed-2"} <= set(configs):
            auto, two = configs["autoscaler"], configs["fixed-2"]
            goals.append(
                Goal(
                    f"{kind}: the autoscaler within 5 points of fixed-2's SLO attainment "
                    "with fewer worker-seconds",
                    f"{auto['slo'] * 100:.1f} % vs {two['slo'] * 100:.1f} %, "
                    f"{auto['worker_s']:.0f} vs {two['worker_s']:.0f} worker-s",
                    auto["slo"] >= two["slo"] - 0.05 and auto["worker_s"] < two["worker_s"],
                    why,
                )
            )
    return Part(lines, goals)


def _median(values: list[float], unit: str = "ms") -> str:
    if not values:
        return "not measured"
    value = statistics.median(values)
    return f"{value:.0f} ms" if unit == "ms" else f"{value:.2f} s"


def _exists(ctx: Context, name: str) -> bool:
    return (ctx.out / EXPERIMENTS / name).exists()
